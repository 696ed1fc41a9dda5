"""Cards from strangers: PNG text chunks read by walking the file (no pixel decoded, sizes capped),
every failure one input error (exit 2), terminal escapes stripped. The bombs are made here."""

from __future__ import annotations

import base64
import json
import struct
import sys
import zlib

import pytest

from opencharacter.cards import png as png_chunks
from opencharacter.cards import read_card, strip_controls
from opencharacter.errors import InputError

CARD = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Captain Vex", "description": "A pirate."}}


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    value = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", value)


def png(*chunks: bytes, width: int = 1, height: int = 1) -> bytes:
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 4))
    return png_chunks.SIGNATURE + header + idat + b"".join(chunks) + chunk(b"IEND", b"")


def encoded(card: dict) -> bytes:
    return base64.b64encode(json.dumps(card).encode())


def test_a_400_megapixel_card_is_read_without_decoding_a_pixel(tmp_path, monkeypatch):
    """20000 × 20000 pixels declared in a 300-byte file: Pillow would allocate 1.2 GB to reach the
    chunk after the image data; the chunk walk never imports it."""
    path = tmp_path / "huge.png"
    path.write_bytes(png(chunk(b"tEXt", b"chara\0" + encoded(CARD)), width=20000, height=20000))
    assert path.stat().st_size < 1000
    monkeypatch.setitem(sys.modules, "PIL", None)  # any Pillow import now fails
    assert read_card(path).data.name == "Captain Vex"


def test_compressed_chunks_are_read_and_bombs_stop_at_the_cap(tmp_path, monkeypatch):
    z = tmp_path / "z.png"
    z.write_bytes(png(chunk(b"zTXt", b"chara\0\0" + zlib.compress(encoded(CARD)))))
    assert read_card(z).data.name == "Captain Vex"
    i = tmp_path / "i.png"
    i.write_bytes(png(chunk(b"iTXt", b"chara\0\1\0en\0\0" + zlib.compress(encoded(CARD)))))
    assert read_card(i).data.name == "Captain Vex"
    # 64 MiB of base64 'A' in 64 KB: inflated only up to the cap (shrunk here to keep the test light).
    monkeypatch.setattr(png_chunks, "MAX_TEXT_BYTES", 2**20)
    bomb = tmp_path / "bomb.png"
    inflater = zlib.compressobj(9)
    compressed = b"".join(inflater.compress(b"A" * 2**20) for _ in range(64)) + inflater.flush()
    bomb.write_bytes(png(chunk(b"zTXt", b"chara\0\0" + compressed)))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(InputError, match="inflates past the 1 MiB limit"):
        read_card(bomb)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (png(chunk(b"tEXt", b"chara\0" + encoded(CARD), crc=0)), "corrupt (CRC mismatch)"),
        (png(chunk(b"tEXt", b"chara\0not base64 json!")), "not base64-encoded UTF-8 JSON"),
        (png(chunk(b"zTXt", b"chara\0\0" + b"not zlib")), "does not decompress"),
        (png(chunk(b"zTXt", b"chara\0\7" + zlib.compress(b"x"))), "unknown compression method"),
        (png_chunks.SIGNATURE + chunk(b"IHDR", b"\0" * 13)[:5], "truncated chunk header"),
        (png_chunks.SIGNATURE + struct.pack(">I", 2**31) + b"tEXt", "out of range"),
        (b"GIF89a not a png", "not a readable PNG"),
        (png(), "no 'chara' text chunk"),
    ],
)
def test_every_broken_png_is_one_input_error(tmp_path, content, problem):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        read_card(path)
    assert problem in str(caught.value) and str(path) in str(caught.value)


def test_a_chunk_claiming_more_than_the_cap_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(png_chunks, "MAX_TEXT_BYTES", 1000)
    path = tmp_path / "long.png"
    path.write_bytes(png(chunk(b"tEXt", b"chara\0" + b"A" * 5000)))
    with pytest.raises(InputError, match=r"a text chunk is 5006 bytes, over the .* limit"):
        read_card(path)
    # an oversized chunk under another keyword is skipped unread, and the card after it is found
    other = tmp_path / "other.png"
    other.write_bytes(png(chunk(b"tEXt", b"comment\0" + b"A" * 5000), chunk(b"tEXt", b"chara\0" + encoded(CARD))))
    assert read_card(other).data.name == "Captain Vex"


def test_terminal_escapes_are_stripped_from_every_string(tmp_path):
    hostile = {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": "\x1b]0;pwned\x07Evil\x1b[2J\x1b[31m Vex\x1b[0m",
            "description": "Line one\r\nLine two\x00\x9b31m\tTabbed\x1b]8;;http://x.example\x1b\\link\x1b]8;;\x1b\\",
            "tags": ["\x1b[5mblink"],
            "extensions": {"\x1b[1mkey": "\x07bell"},
        },
    }
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(hostile), encoding="utf-8")
    data = read_card(path).data
    assert data.name == "Evil Vex"
    assert data.description == "Line one\nLine two\tTabbedlink"
    assert data.tags == ["blink"] and data.extensions == {"key": "bell"}
    assert strip_controls("plain text, ünïcode, emoji 🙂") == "plain text, ünïcode, emoji 🙂"


def test_a_bomb_card_on_the_command_line_is_exit_2_in_one_line(tmp_path, run_cli, monkeypatch):
    monkeypatch.setattr(png_chunks, "MAX_TEXT_BYTES", 2**16)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png(chunk(b"zTXt", b"chara\0\0" + zlib.compress(b"A" * 2**20, 9))))
    code, _, err = run_cli("profiles", "--personas", bomb, "--out", tmp_path / "run", "--backend", "fake", "-q")
    assert code == 2
    assert err.strip().count("\n") == 0 and "inflates past" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
