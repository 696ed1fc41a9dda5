"""The dataset cards: `RUN/README.md` (what made the data, how much, at what cost) and `RUN/exports/README.md`.

Both are Hugging Face dataset cards made with `huggingface_hub.DatasetCardData`, so the Hub and
`datasets` read them: a default config makes `datasets.load_dataset(RUN)` give the dialogues
(`load_dataset(RUN, "characters")` the characters), and the fields the Hub expects are set
(`license`, `task_categories`, `size_categories`, `pretty_name`, `source_datasets`).

`license` is the configured one (`import --license`, `push --license`; kept in the store), else
the teacher's (synthetic data carries its terms: `export/licenses.py`). The card never shows
where things are on this machine: paths keep their file names, URLs lose credentials and queries
(`export/shareable.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opencharacter import __version__
from opencharacter.export.cost import card_lines
from opencharacter.export.licenses import UNKNOWN, default_license
from opencharacter.export.shareable import hub_id_or_none, shareable
from opencharacter.fileio import atomic_open
from opencharacter.selection import CANDIDATE_SCORES, PREFERENCES, SUMMARY_META, dialogue_stage, run_candidates
from opencharacter.store import RunStore

CARD_META = "card"
"""Store metadata the cards read: `license`, `pretty_name`, `source_datasets`, `origin`."""
EXPORTS = "exports"
# Export files a dataset config can load, in the order the default is chosen. JSON Lines only:
# `datasets` reads every config of a repository with one builder (the default config's format),
# so the Parquet file is named in the card, not made a config.
EXPORT_CONFIGS = (
    ("messages", "messages.jsonl"),
    ("sharegpt", "sharegpt.jsonl"),
    ("alpaca", "alpaca.jsonl"),
)
PARQUET = "dialogues.parquet"
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))
_SOURCE_KEYS = ("personas", "instructions", "path")


def size_category(rows: int) -> str:
    """The Hub's `size_categories` bucket for a number of rows."""
    for bound, name in _SIZES:
        if rows < bound:
            return name
    return "1M<n<10M" if rows < 10_000_000 else "10M<n<100M"


def card_settings(store: RunStore) -> dict[str, Any]:
    """License, name and sources of the run's data, as configured or as known from its teacher."""
    settings = dict(store.get_meta(CARD_META) or {})
    teacher = store.get_meta("teacher")
    settings.setdefault("license", default_license(teacher))
    settings.setdefault("pretty_name", f"OpenCharacter role-play dialogues ({store.run_dir.resolve().name})")
    sources = set(settings.get("source_datasets", [])) | set(_hub_sources(store.get_meta("commands", [])))
    settings["source_datasets"] = sorted(sources)
    settings["teacher"] = teacher
    return settings


def _hub_sources(value: Any, key: str = "") -> list[str]:
    """Hub ids among the personas/instructions a run's commands read (local files are not sources)."""
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _hub_sources(v, k)]
    if isinstance(value, list):
        return [found for item in value for found in _hub_sources(item, key)]
    if isinstance(value, str) and key in _SOURCE_KEYS:
        return [value] if hub_id_or_none(value) else []
    return []


def card_data(settings: dict[str, Any], rows: int, configs: list[dict[str, Any]]) -> Any:
    from huggingface_hub import DatasetCardData

    return DatasetCardData(
        language=["en"],
        license=settings["license"],
        task_categories=["text-generation"],
        size_categories=[size_category(rows)],
        pretty_name=settings["pretty_name"],
        source_datasets=settings["source_datasets"] or None,
        tags=["role-playing", "synthetic", "opencharacter"],
        configs=configs,
    )


def _config(name: str, path: str, default: bool = False) -> dict[str, Any]:
    return {
        "config_name": name,
        "data_files": [{"split": "train", "path": path}],
        **({"default": True} if default else {}),
    }


def _card_text(data: Any, body: list[str]) -> str:
    return "\n".join(["---", data.to_yaml(), "---", "", *body])


def license_lines(settings: dict[str, Any]) -> list[str]:
    teacher = settings.get("teacher") or "the teacher model"
    if settings["license"] == UNKNOWN:
        terms = f"`{teacher}`'s terms of use govern this synthetic data; set the license with `push --license`."
    else:
        terms = f"License: `{settings['license']}` (synthetic data made by `{teacher}` carries its terms)."
    return ["## License", "", terms, ""]


def write_card(store: RunStore) -> Path:
    # Counted by SQLite over the stored JSON: the card never holds the dialogues in memory.
    stage = dialogue_stage(store)  # with candidates > 1: the kept ones
    facets = store.facets(stage, ("strategy", "source", "model", "prompt_version", "system_prompt_version"))
    by_strategy, by_source = facets["strategy"], facets["source"]
    failures = store.failure_counts()
    usage = store.usage()
    sessions = store.sessions()
    models = sorted(set(facets["model"]) | {m.split(" · ", 1)[1] for m in usage})
    prompts = sorted(set(facets["prompt_version"]) | set(facets["system_prompt_version"]))
    prompts = sorted(set(prompts) | {key.split(" · ", 1)[0] for key in usage})
    settings = card_settings(store)
    dialogues = store.count(stage)
    configs = [_config("dialogues", "dialogues.jsonl", default=True), _config("characters", "characters.jsonl")]
    if run_candidates(store) > 1:
        configs.append(_config("preferences", "preferences.jsonl"))
    body = [
        "# OpenCharacter synthetic role-play data",
        "",
        f"Made with opencharacter {__version__}, following *OpenCharacter: Training Customizable",
        "Role-Playing LLMs with Large-Scale Synthetic Personas* (Wang et al., 2025).",
        *([f"Imported from {settings['origin']}.", ""] if settings.get("origin") else [""]),
        "```python",
        "from datasets import load_dataset",
        'dialogues = load_dataset("<this repo or directory>", split="train")  # messages with the system prompt',
        'characters = load_dataset("<this repo or directory>", "characters", split="train")',
        "```",
        "",
        "## Contents",
        "",
        "| file | records |",
        "|---|---|",
        f"| characters.jsonl | {store.count('profiles')} |",
        f"| dialogues.jsonl | {dialogues} |",
        *selection_files(store),
        f"| failures.jsonl | {sum(failures.values())} |",
        "",
        *selection_lines(store),
        "Dialogues by strategy: " + (", ".join(f"{k} {v}" for k, v in sorted(by_strategy.items())) or "none"),
        "",
        "Dialogues by source: " + (", ".join(f"{k} {v}" for k, v in sorted(by_source.items())) or "none"),
        "",
        "Failures by stage: " + (", ".join(f"{k} {v}" for k, v in sorted(failures.items())) or "none"),
        "",
        *license_lines(settings),
        "## Models and prompts",
        "",
        *(f"- model: `{shareable(m)}`" for m in models),
        *(f"- prompt: `{p}` (templates ship in `opencharacter/prompts/`)" for p in prompts),
        "",
        "## Token usage",
        "",
        "| prompt · model | calls | prompt tokens | completion tokens |",
        "|---|---|---|---|",
        *(
            f"| {shareable(key)} | {u['calls']} | {u['prompt_tokens']} | {u['completion_tokens']} |"
            for key, u in sorted(usage.items())
        ),
        "",
        *card_lines(store),
        "## Commands and wall time",
        "",
        "| command | wall seconds | new calls | cached calls |",
        "|---|---|---|---|",
        *(f"| {s['command']} | {s['wall_seconds']:.1f} | {s['new_calls']} | {s['cached_calls']} |" for s in sessions),
        f"| **total** | {sum(s['wall_seconds'] for s in sessions):.1f} | | |",
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(shareable(store.get_meta("commands", [])), indent=2),
        "```",
        "",
    ]
    path = store.run_dir / "README.md"
    with atomic_open(path) as stream:
        stream.write(_card_text(card_data(settings, dialogues, configs), body))
    write_exports_card(store.run_dir, settings, dialogues)
    return path


def write_exports_card(run_dir: Path, settings: dict[str, Any], rows: int) -> Path | None:
    """`exports/README.md`: one config per JSONL export there, `messages` the default.

    Without a card, `load_dataset(RUN/exports)` would pick one file type silently; with it, each
    format is a named config and the default is stated.
    """
    folder = run_dir / EXPORTS
    present = [(name, file) for name, file in EXPORT_CONFIGS if (folder / file).is_file()]
    if not present:
        return None
    configs = [_config(name, file, default=index == 0) for index, (name, file) in enumerate(present)]
    rows_table = [
        f"| {name}{' (default)' if index == 0 else ''} | {file} | {_SHAPES[name]} |"
        for index, (name, file) in enumerate(present)
    ]
    notes = []
    if (folder / PARQUET).is_file():
        notes += [
            f'`{PARQUET}` holds every dialogue field: `load_dataset("parquet", data_files="{PARQUET}")`.',
            "",
        ]
    if (folder / "dataset_info.json").is_file():
        notes += ["`dataset_info.json` names the JSONL files for LLaMA-Factory (`dataset_dir: exports`).", ""]
    if (folder / "cards").is_dir():
        notes += ["`cards/` holds one Character Card per character (JSON and PNG).", ""]
    body = [
        "# OpenCharacter role-play dialogues: export formats",
        "",
        "The run's dialogues (the parent directory's `dialogues.jsonl`) in the formats trainers read.",
        "",
        "| config | file | shape |",
        "|---|---|---|",
        *rows_table,
        "",
        *notes,
        *license_lines(settings),
    ]
    path = folder / "README.md"
    with atomic_open(path) as stream:
        stream.write(_card_text(card_data(settings, rows, configs), body))
    return path


_SHAPES = {
    "messages": "OpenAI chat `messages` (TRL's SFTTrainer reads it as is)",
    "sharegpt": "ShareGPT `conversations` (axolotl, LLaMA-Factory, FastChat)",
    "alpaca": "Alpaca instruction/output with `system` and `history` (LLaMA-Factory)",
}


def selection_files(store: RunStore) -> list[str]:
    if run_candidates(store) < 2:
        return []
    return [
        f"| candidates.jsonl | {store.count(CANDIDATE_SCORES)} |",
        f"| preferences.jsonl | {store.count(PREFERENCES)} |",
    ]


def selection_lines(store: RunStore) -> list[str]:
    """What the character-aware selection made, kept and gained (nothing when candidates = 1)."""
    k = run_candidates(store)
    summary = store.get_meta(SUMMARY_META)
    if k < 2 or not summary:
        return []
    return [
        "## Selection among candidates",
        "",
        f"{k} candidate dialogues per (instruction, character, strategy) pair; the one whose last answer",
        "ranks its own character's profile highest among distractor profiles (MiniLM embeddings, names",
        "removed) is kept. Evaluation's embedding fidelity measures the same signal, so it is not an",
        "independent check of this data.",
        "",
        "| pairs | candidates made | kept | dropped below chance | preference pairs |"
        " mean best reciprocal rank | mean first-candidate reciprocal rank |",
        "|---|---|---|---|---|---|---|",
        f"| {summary['pairs']} | {summary['candidates']} | {summary['kept']} | {summary['dropped_below_chance']}"
        f" | {summary['preferences']} | {summary['mean_best_rr']:.3f} | {summary['mean_first_rr']:.3f} |",
        "",
    ]
