"""The dataset card (`README.md` of a run): what made the data, how much, at what cost."""

from __future__ import annotations

import json
from pathlib import Path

from opencharacter import __version__
from opencharacter.export.cost import card_lines
from opencharacter.fileio import atomic_open
from opencharacter.selection import CANDIDATE_SCORES, PREFERENCES, SUMMARY_META, dialogue_stage, run_candidates
from opencharacter.store import RunStore


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
    lines = [
        "---",
        "language: [en]",
        "tags: [role-playing, synthetic, opencharacter]",
        "configs:",
        "- config_name: dialogues",
        "  data_files: dialogues.jsonl",
        "- config_name: characters",
        "  data_files: characters.jsonl",
        *(["- config_name: preferences", "  data_files: preferences.jsonl"] if run_candidates(store) > 1 else []),
        "---",
        "",
        "# OpenCharacter synthetic role-play data",
        "",
        f"Made with opencharacter {__version__}, following *OpenCharacter: Training Customizable",
        "Role-Playing LLMs with Large-Scale Synthetic Personas* (Wang et al., 2025).",
        "",
        "## Contents",
        "",
        "| file | records |",
        "|---|---|",
        f"| characters.jsonl | {store.count('profiles')} |",
        f"| dialogues.jsonl | {store.count(stage)} |",
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
        "## Models and prompts",
        "",
        *(f"- model: `{m}`" for m in models),
        *(f"- prompt: `{p}` (templates ship in `opencharacter/prompts/`)" for p in prompts),
        "",
        "## Token usage",
        "",
        "| prompt · model | calls | prompt tokens | completion tokens |",
        "|---|---|---|---|",
        *(
            f"| {key} | {u['calls']} | {u['prompt_tokens']} | {u['completion_tokens']} |"
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
        json.dumps(store.get_meta("commands", []), indent=2),
        "```",
        "",
    ]
    path = store.run_dir / "README.md"
    with atomic_open(path) as stream:
        stream.write("\n".join(lines))
    return path


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
