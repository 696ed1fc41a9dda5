"""PNG text chunks read by walking the file's chunks, never by decoding the image.

A character card is a PNG whose `tEXt` chunk `chara` (V2) or `ccv3` (V3) holds the card as base64
JSON. Cards come from strangers, so reading one must cost what the card's text costs, whatever the
image claims to be: Pillow decodes every pixel to reach text chunks stored after the image data (a
48 KB file of 400 megapixels asks for 1.2 GB), and stops with an exception at compressed text past
1 MB. Here the image data is skipped with a seek, each wanted chunk is read up to a size cap and
checked against its CRC, compressed text (`zTXt`, `iTXt`) is inflated only up to a cap, and every
problem is one InputError naming the file.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from opencharacter.errors import InputError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_BYTES = 16 * 2**20
"""A wanted text chunk, as stored and once inflated: a card with a large lorebook is a few MB."""
MAX_CHUNKS = 100_000
"""Chunks walked before giving up (an animated PNG has a few per frame)."""
_TEXT_TYPES = (b"tEXt", b"zTXt", b"iTXt")


def read_text_chunks(path: str | Path, keywords: tuple[str, ...]) -> dict[str, str]:
    """The first text chunk of each of `keywords` found in the PNG at `path` (keyword → text)."""
    path = Path(path)
    where = str(path)
    found: dict[str, str] = {}
    wanted = {keyword.encode("latin-1") for keyword in keywords}
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise InputError(where, None, f"cannot read the card ({exc.strerror or exc})") from None
    with stream:
        if stream.read(8) != SIGNATURE:
            raise InputError(where, None, "not a readable PNG (no PNG signature)")
        for _ in range(MAX_CHUNKS):
            header = stream.read(8)
            if not header:
                return found  # no IEND: a truncated file, but what was read is usable
            if len(header) < 8:
                raise InputError(where, None, "not a readable PNG (truncated chunk header)")
            length, kind = struct.unpack(">I4s", header)
            if length > 2**31 - 1:
                raise InputError(where, None, f"not a readable PNG (chunk length {length} out of range)")
            if kind == b"IEND":
                return found
            if kind not in _TEXT_TYPES or length > MAX_TEXT_BYTES + 80:
                if kind in _TEXT_TYPES and _peek_keyword(stream, length) in wanted:
                    raise InputError(where, None, f"a text chunk is {length} bytes, over the {_mib()} limit")
                stream.seek(length + 4, 1)  # data and CRC: image data is never read
                continue
            data = stream.read(length)
            crc = stream.read(4)
            if len(data) < length or len(crc) < 4:
                raise InputError(where, None, f"not a readable PNG (truncated {kind.decode()} chunk)")
            keyword, _, _ = data.partition(b"\0")
            if keyword not in wanted or keyword.decode("latin-1") in found:
                continue
            if zlib.crc32(kind + data) != struct.unpack(">I", crc)[0]:
                raise InputError(where, None, f"the '{keyword.decode()}' chunk is corrupt (CRC mismatch)")
            found[keyword.decode("latin-1")] = _text(kind, data, where)
    raise InputError(where, None, f"not a readable PNG (more than {MAX_CHUNKS} chunks)")


def _peek_keyword(stream, length: int) -> bytes:
    """The keyword of an oversized text chunk, read without reading the chunk (position restored)."""
    start = stream.tell()
    keyword = stream.read(min(length, 80)).partition(b"\0")[0]
    stream.seek(start)
    return keyword


def _text(kind: bytes, data: bytes, where: str) -> str:
    keyword, _, rest = data.partition(b"\0")
    name = keyword.decode("latin-1")
    if kind == b"tEXt":
        return rest.decode("latin-1")
    if kind == b"zTXt":
        if not rest or rest[0] != 0:
            raise InputError(where, None, f"the '{name}' chunk uses an unknown compression method")
        return _inflate(rest[1:], name, where).decode("latin-1")
    # iTXt: compression flag, method, language tag \0, translated keyword \0, UTF-8 text
    if len(rest) < 2:
        raise InputError(where, None, f"the '{name}' chunk is malformed (iTXt header)")
    compressed, method = rest[0], rest[1]
    _, _, rest = rest[2:].partition(b"\0")  # language tag
    _, _, text = rest.partition(b"\0")  # translated keyword
    if compressed:
        if method != 0:
            raise InputError(where, None, f"the '{name}' chunk uses an unknown compression method")
        text = _inflate(text, name, where)
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(where, None, f"the '{name}' chunk is not UTF-8 text") from None


def _inflate(data: bytes, name: str, where: str) -> bytes:
    """zlib data inflated to at most MAX_TEXT_BYTES: a bomb stops at the cap, not at the memory limit."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_TEXT_BYTES + 1)
    except zlib.error as exc:
        raise InputError(where, None, f"the '{name}' chunk does not decompress ({exc})") from None
    if len(out) > MAX_TEXT_BYTES or inflater.unconsumed_tail:
        raise InputError(where, None, f"the '{name}' chunk inflates past the {_mib()} limit")
    return out


def _mib() -> str:
    return f"{MAX_TEXT_BYTES / 2**20:g} MiB"
