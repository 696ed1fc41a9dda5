"""Character-aware selection among `synthesis.candidates` answers (rejection sampling).

Synthesis makes k candidate dialogues per (instruction, character, strategy) pair, all kept in the
store's `dialogues` stage. Selection then scores each candidate by how well its answer identifies
its own character among distractors (the evaluation's embedding fidelity) and writes derived
stages the run's files are rendered from:

- `selection`: one `PairSelection` per pair (what was scored, under which settings, what was kept);
- `selected`: the kept candidate's `Dialogue` per kept pair (→ `dialogues.jsonl` when k > 1);
- `candidate_scores`: one `CandidateScore` per candidate (→ `candidates.jsonl`);
- `preferences`: one `PreferencePair` per pair with a better and a worse candidate (→ `preferences.jsonl`).

This module is light (no torch): the files and filters import it to know which stage to read.
The scoring itself is in `opencharacter.selection.runner`.
"""

from __future__ import annotations

from opencharacter.store import RunStore

SELECTION = "selection"
SELECTED = "selected"
CANDIDATE_SCORES = "candidate_scores"
PREFERENCES = "preferences"
SUMMARY_META = "selection_summary"


def run_candidates(store: RunStore) -> int:
    """The run's `synthesis.candidates`, from the dialogue settings it recorded (1 when none)."""
    settings = store.get_meta("settings", {}) or {}
    return max(
        [int(value.get("candidates", 1)) for key, value in settings.items() if key.startswith("dialogues:")],
        default=1,
    )


def dialogue_stage(store: RunStore) -> str:
    """Where the run's training dialogues are: every dialogue (k = 1), or the kept candidates (k > 1)."""
    return SELECTED if run_candidates(store) > 1 else "dialogues"
