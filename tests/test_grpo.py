"""`train --method grpo` for real: TRL's GRPOTrainer on the embedded model for a few steps, rewards from
the registry (the judge is the fake backend), the adapter loaded by `chat`; a judge that is down is
counted and training goes on."""

from __future__ import annotations

import json
import math

import pytest

GRPO = """
train:
  method: grpo
  learning_rate: 0.0005
  max_length: 320
  gradient_checkpointing: false
  grpo:
    num_generations: 2
    prompts_per_step: 2
    max_completion_length: 16
    rewards:
      - {{name: fidelity, signal: lexical, distractors: 3}}
      - {{name: copy_penalty}}
      - {{name: format, weight: 0.5}}
      - {{name: judge, weight: 0.5, judge: {judge}}}
"""


def _config(tmp_path, name: str, judge: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(GRPO.format(judge=judge), encoding="utf-8")
    return path


@pytest.mark.slow
def test_grpo_trains_logs_every_reward_and_its_adapter_chats(tiny_run, tmp_path, run_cli):
    out = tmp_path / "grpo"
    config = _config(tmp_path, "up", "{backend: fake}")
    code, stdout, err = run_cli(
        "train", "--method", "grpo", "--run", tiny_run, "--out", out, "--config", config, "--max-steps", "2"
    )
    assert code == 0, err
    assert "trained 2 GRPO steps" in stdout + err and "fidelity" in stdout + err
    history = json.loads((out / "loss_history.json").read_text())
    logged = [entry for entry in history if "reward" in entry]
    assert len(logged) == 2
    for entry in logged:
        for label in ("fidelity", "copy_penalty", "format", "judge"):
            assert math.isfinite(entry[f"rewards/{label}/mean"])
            assert entry[f"reward_seconds/{label}"] >= 0
        assert entry["judge/failed"] == 0
    meta = json.loads((out / "opencharacter.json").read_text())
    assert meta["method"] == "grpo" and meta["steps"] == 2
    assert meta["rewards"]["failed_calls"] == {"judge": 0}
    assert [r["label"] for r in meta["grpo"]["rewards"]] == ["fidelity", "copy_penalty", "format", "judge"]
    assert (out / "adapter_model.safetensors").is_file() and not (out / "merged").exists()

    characters = [json.loads(line) for line in (tiny_run / "characters.jsonl").read_text().splitlines()]
    code, reply, err = run_cli(
        "chat", "--model", out, "--run", tiny_run, "--character", characters[0]["character_id"], "--message", "hi"
    )
    assert code == 0, err
    assert reply.strip()


@pytest.mark.slow
def test_a_judge_that_is_down_is_counted_and_the_step_goes_on(tiny_run, tmp_path, run_cli):
    out = tmp_path / "down"
    config = _config(tmp_path, "down", "{backend: fake, max_retries: 0, options: {fail_every: 1}}")
    code, stdout, err = run_cli(
        "train", "--method", "grpo", "--run", tiny_run, "--out", out, "--config", config, "--max-steps", "1"
    )
    assert code == 0, err
    assert "4 failed judge calls (no score, step went on)" in stdout + err
    entry = next(e for e in json.loads((out / "loss_history.json").read_text()) if "reward" in e)
    # No judge score at all this step: the other rewards still made the step's advantages.
    assert entry["judge/failed"] == 4 and math.isfinite(entry["reward"]) and entry["rewards/judge/mean"] is None
    assert math.isfinite(entry["rewards/fidelity/mean"]) and "judge n/a" in err
    assert json.loads((out / "opencharacter.json").read_text())["rewards"]["failed_calls"] == {"judge": 4}


def test_grpo_needs_a_run(run_cli, tmp_path):
    code, _, err = run_cli("train", "--method", "grpo", "--data", tmp_path / "x.jsonl", "--out", tmp_path / "m")
    assert code == 2 and "--method grpo trains from a run" in err


@pytest.mark.slow
def test_the_recipe_trains_and_evaluates_a_grpo_student_from_its_sft_student(tmp_path, run_cli):
    from opencharacter.sources.bundled import sample_path

    config = tmp_path / "recipe.yaml"
    config.write_text(
        f"""
out: {tmp_path / "recipe"}
held_out: 0.3
personas: {{path: {sample_path("personas.jsonl")}, limit: 7}}
instructions: [{{path: {sample_path("instructions.jsonl")}, limit: 4}}]
strategies: [rewrite]
teacher: {{backend: fake, options: {{sample_system_words: 6}}}}
judges: [{{backend: fake}}]
synthesis: {{per_instruction: 2}}
filters: {{near_duplicate_profiles: null}}
train: {{model: embedded, max_steps: 1, batch_size: 2, max_length: 320}}
grpo:
  launcher: {{nproc_per_node: 2}}
  max_steps: 1
  max_length: 320
  grpo: {{num_generations: 2, prompts_per_step: 1, max_completion_length: 8,
          rewards: [{{name: fidelity, signal: lexical}}, {{name: judge, weight: 0.5}}]}}
grpo_from: rewrite
eval: {{light: true, answer_sampling: {{temperature: 0, max_tokens: 16}}, fidelity_questions: 1}}
""",
        encoding="utf-8",
    )
    code, _, err = run_cli("recipe", config, "-q")
    assert code == 0, err
    out = tmp_path / "recipe"
    results = json.loads((out / "results.json").read_text())
    assert [row["model"] for row in results["table"]] == ["base", "rewrite", "rewrite+grpo"]
    meta = json.loads((out / "model-rewrite+grpo" / "opencharacter.json").read_text())
    assert meta["method"] == "grpo" and meta["init_adapter"] == str(out / "model-rewrite")
    # The GRPO student on two real torchrun ranks (gloo), each rank with its own judge cache.
    assert meta["memory_plan"]["processes"] == 2 and meta["grpo"]["answers_per_step"] == 4
    assert {p.name for p in (out / "model-rewrite+grpo" / "judge-calls").iterdir()} == {"rank-0", "rank-1"}
    judge = next(r for r in meta["grpo"]["rewards"] if r["label"] == "judge")
    assert judge["judge"]["backend"] == "fake"  # the recipe's judge, filled in
    assert "| rewrite+grpo |" in (out / "results.md").read_text()
