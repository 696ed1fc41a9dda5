"""Export a run's dialogues in the formats trainers load: ShareGPT, Alpaca, OpenAI messages, Parquet."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from opencharacter.errors import ConfigError
from opencharacter.fileio import atomic_open, write_jsonl
from opencharacter.records import Character, Dialogue

_SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}


def to_sharegpt(dialogue: Dialogue) -> dict[str, Any]:
    """FastChat/axolotl/LLaMA-Factory ShareGPT: system first, then human/gpt turns."""
    return {
        "id": dialogue.dialogue_id,
        "conversations": [{"from": _SHAREGPT_FROM[m.role], "value": m.content} for m in dialogue.messages],
    }


def to_alpaca(dialogue: Dialogue) -> dict[str, Any]:
    """LLaMA-Factory Alpaca: the last exchange as instruction/output, earlier ones as `history`."""
    system = next((m.content for m in dialogue.messages if m.role == "system"), "")
    turns = [m for m in dialogue.messages if m.role != "system"]
    pairs = [(turns[i].content, turns[i + 1].content) for i in range(0, len(turns) - 1, 2)]
    instruction, output = pairs[-1]
    return {
        "instruction": instruction,
        "input": "",
        "output": output,
        "system": system,
        "history": [list(pair) for pair in pairs[:-1]],
    }


def to_messages(dialogue: Dialogue) -> dict[str, Any]:
    """OpenAI chat fine-tuning shape, which TRL's SFTTrainer reads directly."""
    return {
        "messages": [m.model_dump() for m in dialogue.messages],
        "dialogue_id": dialogue.dialogue_id,
        "character_id": dialogue.character_id,
        "strategy": dialogue.strategy,
    }


# Rows per Parquet row group: the writer holds one group at a time, so memory stays flat at any size.
PARQUET_BATCH = 10_000


def parquet_schema() -> Any:
    """The Arrow schema of a dialogue row, spelled out: inferring it from the first rows would type an
    always-empty `finish_reasons` as list<null> and fail on the first later row that has one."""
    import pyarrow as pa

    strings = pa.string()
    message = pa.struct([("role", strings), ("content", strings)])
    columns = {name: strings for name in Dialogue.model_fields}
    columns.update(messages=pa.list_(message), finish_reasons=pa.list_(strings), candidate=pa.int64())
    return pa.schema(list(columns.items()))


def _write_parquet(path: Path, dialogues: Iterable[Dialogue]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema, rows, count = parquet_schema(), [], 0
    with atomic_open(path, "wb") as stream, pq.ParquetWriter(stream, schema) as writer:
        for dialogue in dialogues:
            rows.append(dialogue.model_dump(mode="json"))
            if len(rows) == PARQUET_BATCH:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                count, rows = count + len(rows), []
        if rows or not count:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            count += len(rows)
    return count


_JSONL: dict[str, Callable[[Dialogue], dict[str, Any]]] = {
    "sharegpt": to_sharegpt,
    "alpaca": to_alpaca,
    "messages": to_messages,
}
EXPORT_FORMATS: tuple[str, ...] = (*_JSONL, "parquet")


def export_cards(characters: Iterable[Character], out: Path) -> tuple[Path, int]:
    """One Character Card V2 per character, as `<id>.json` and `<id>.png` (card in the `chara` chunk)."""
    from opencharacter.cards import card_from_character, write_card_json, write_card_png

    count = 0
    for character in characters:
        card = card_from_character(character)
        write_card_json(card, out / f"{character.character_id}.json")
        write_card_png(card, out / f"{character.character_id}.png")
        count += 1
    return out, count


# LLaMA-Factory reads a dataset only through a `dataset_info.json` entry in its `dataset_dir`
# (https://github.com/hiyouga/LLaMA-Factory/blob/main/data/README.md). Without one, the Alpaca
# export's `system` and `history` columns are ignored (both default to None there), so every
# dialogue would train without its character profile and earlier turns.
LLAMA_FACTORY_INFO = "dataset_info.json"
_LLAMA_FACTORY: dict[str, dict[str, Any]] = {
    "alpaca": {
        "columns": {
            "prompt": "instruction",
            "query": "input",
            "response": "output",
            "system": "system",
            "history": "history",
        },
    },
    "sharegpt": {
        "formatting": "sharegpt",
        "columns": {"messages": "conversations"},
        # Our system prompt is the first conversation turn; LLaMA-Factory's system_tag takes it from there.
        "tags": {
            "role_tag": "from",
            "content_tag": "value",
            "user_tag": "human",
            "assistant_tag": "gpt",
            "system_tag": "system",
        },
    },
    "messages": {
        "formatting": "sharegpt",
        "columns": {"messages": "messages"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
            "system_tag": "system",
        },
    },
}


def write_llama_factory_info(out: Path, fmt: str, file_name: str) -> Path:
    """Add (or refresh) `opencharacter_<fmt>` in `out/dataset_info.json`, keeping other entries.

    Use it with `dataset_dir: <out>` and `dataset: opencharacter_alpaca` in a LLaMA-Factory config.
    """
    path = out / LLAMA_FACTORY_INFO
    info: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"{path}: not a JSON object; move it away or fix it before exporting here") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: not a JSON object; move it away or fix it before exporting here")
        info = loaded
    info[f"opencharacter_{fmt}"] = {"file_name": file_name, **_LLAMA_FACTORY[fmt]}
    with atomic_open(path) as stream:
        stream.write(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return path


def export_dialogues(dialogues: Iterable[Dialogue], fmt: str, out: Path) -> tuple[Path, int]:
    """Write `dialogues` (streamed: JSONL formats hold one at a time) as `fmt` into the directory `out`;
    returns the file and the row count.

    JSONL formats that LLaMA-Factory reads also get their entry in `out/dataset_info.json`.
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}, cards")
    if fmt == "parquet":
        path = out / "dialogues.parquet"
        return path, _write_parquet(path, dialogues)
    convert = _JSONL[fmt]
    path = out / f"{fmt}.jsonl"
    rows = write_jsonl(path, (json.dumps(convert(d), ensure_ascii=False) for d in dialogues))
    write_llama_factory_info(out, fmt, path.name)
    return path, rows
