"""The recipe end to end: fake teacher and judge, the embedded model as a really trained student (slow)."""

from __future__ import annotations

import json

import pytest

from opencharacter.config import RecipeConfig, build, load_yaml
from opencharacter.recipe.experiment import split_personas
from opencharacter.records import Persona
from opencharacter.sources.bundled import sample_path
from tests.personagym_standin import make_checkout

pytestmark = pytest.mark.slow


def test_split_is_seeded_and_disjoint():
    personas = [Persona(persona=f"Persona number {i}") for i in range(20)]
    train, held = split_personas(personas, 0.25, seed=1)
    assert len(held) == 5 and len(train) == 15 and not {p.persona for p in train} & {p.persona for p in held}
    assert split_personas(personas, 0.25, seed=1) == (train, held)
    assert split_personas(personas, 0.25, seed=2) != (train, held)


def test_recipe_runs_end_to_end_and_keeps_held_out_characters_out_of_training(tmp_path, run_cli):
    checkout = make_checkout(tmp_path / "PersonaGym", ["A ferry captain from Oslo"], per_task=1)
    config = tmp_path / "recipe.yaml"
    config.write_text(
        f"""
out: {tmp_path / "recipe"}
held_out: 0.3
personas: {{path: {sample_path("personas.jsonl")}, limit: 7}}
instructions: [{{path: {sample_path("instructions.jsonl")}, limit: 4}}]
strategies: [generate]  # R's student: tests/test_grpo.py (its recipe trains R, then GRPO on it)
teacher: {{backend: fake, options: {{sample_system_words: 6}}}}
judges: [{{backend: fake}}]
synthesis: {{per_instruction: 2, candidates: 2}}
filters: {{near_duplicate_profiles: null}}
train: {{model: embedded, max_steps: 2, batch_size: 2, max_length: 320, learning_rate: 0.001}}
dpo: {{max_steps: 1, batch_size: 2, max_length: 320}}
eval:
  light: true
  answer_sampling: {{temperature: 0, max_tokens: 16}}
  fidelity_questions: 1
  benchmark: personagym
  judges: [{{backend: fake, model: fake-judge}}]
  personagym: {{checkout: {checkout}, student_sampling: {{max_tokens: 8}}}}
""",
        encoding="utf-8",
    )
    build(RecipeConfig, load_yaml(config), str(config))
    code, _, err = run_cli("recipe", config, "-q")
    assert code == 0, err
    out = tmp_path / "recipe"
    results = json.loads((out / "results.json").read_text())
    assert [row["model"] for row in results["table"]] == ["base", "generate", "generate+dpo"]
    assert results["split"] == {"train_characters": 5, "held_out_characters": 2}
    held = {
        json.loads(line)["character_id"] for line in (out / "held_out" / "characters.jsonl").read_text().splitlines()
    }
    trained_on = {
        json.loads(line)["character_id"]
        for line in (out / "data" / "filtered" / "dialogues.jsonl").read_text().splitlines()
    }
    assert held and trained_on and not held & trained_on
    report = json.loads((out / "data" / "filtered" / "filter_report.json").read_text())
    assert not any("originals unavailable" in note for note in report["notes"])  # the copy check ran
    meta = json.loads((out / "model-generate" / "opencharacter.json").read_text())
    assert meta["steps"] == 2 and meta["config"]["strategies"] == ["generate"]
    # The DPO student starts from the G student and learns from the selection's pairs.
    dpo = json.loads((out / "model-generate+dpo" / "opencharacter.json").read_text())
    assert dpo["config"]["method"] == "dpo" and dpo["config"]["init_adapter"] == str(out / "model-generate")
    assert dpo["steps"] == 1 and (out / "data" / "filtered" / "preferences.jsonl").read_text().strip()
    generate_row = results["table"][1]
    delta, low, high = generate_row["PersonaScore delta"]
    assert low <= delta <= high
    assert generate_row["fidelity chance MRR"] == pytest.approx(0.75)
    markdown = (out / "results.md").read_text()
    assert "| base |" in markdown and "Data and compute" in markdown and "student generate" in markdown
    # Every model also scored on the (stand-in) PersonaGym benchmark, with the protocol: one PScore-L table.
    assert list(results["benchmark"]) == ["base", "generate", "generate+dpo"]
    assert "## PersonaGym benchmark (PScore-L)" in markdown and "| generate+dpo | student |" in markdown
    # Each phase ran in its own process and says what it took.
    phases = results["phases"]
    assert {"data", "train generate", "train generate+dpo", "eval base", "benchmark", "recipe"} <= set(phases)
    assert all(phase["peak_rss_bytes"] > 0 and phase["processes"] == 1 for phase in phases.values())
    assert "peak memory (RSS, each phase in its own process): data " in markdown
    base_q = (out / "evals" / "base" / "questions.jsonl").read_text()
    assert base_q == (out / "evals" / "generate" / "questions.jsonl").read_text()  # identical questions

    # A rerun reuses both students, also when only how they are launched changed (two torchrun ranks now).
    adapter = out / "model-generate" / "adapter_model.safetensors"
    stamp = adapter.stat().st_mtime_ns
    launched = config.read_text().replace("learning_rate: 0.001", "learning_rate: 0.001, launcher: {nproc_per_node: 2}")
    config.write_text(launched, encoding="utf-8")
    code, _, err = run_cli("recipe", config, "-q")
    assert code == 0 and "retraining" not in err and adapter.stat().st_mtime_ns == stamp
    phases = json.loads((out / "results.json").read_text())["phases"]
    assert phases["train generate"]["reused"] and phases["train generate"]["processes"] == 1
    # A changed learning rate retrains the SFT student, and so the DPO student on top of it (and redoes
    # their evaluations): on two real torchrun ranks (gloo), DPO's too (it inherits train.launcher).
    config.write_text(config.read_text().replace("learning_rate: 0.001", "learning_rate: 0.0005"), encoding="utf-8")
    code, _, err = run_cli("recipe", config, "-q")
    assert code == 0 and err.count("retraining") == 2, err  # the SFT student, and DPO on top of it
    assert adapter.stat().st_mtime_ns != stamp
    for label in ("generate", "generate+dpo"):
        meta = json.loads((out / f"model-{label}" / "opencharacter.json").read_text())
        assert meta["memory_plan"]["processes"] == 2 and meta["steps"] == (2 if label == "generate" else 1), label
    assert meta["config"]["init_adapter"] == str(out / "model-generate")
    meta = json.loads((out / "model-generate" / "opencharacter.json").read_text())
    assert meta["config"]["learning_rate"] == 0.0005
    phases = json.loads((out / "results.json").read_text())["phases"]
    assert phases["train generate+dpo"]["processes"] == 2 and "reused" not in phases["train generate+dpo"]
