"""Real training (TRL + peft on the embedded model, CPU) and chat against the result (slow)."""

from __future__ import annotations

import json

import pytest

from opencharacter.cards import card_from_character, write_card_json
from opencharacter.records import Character
from opencharacter.serve.server import ScriptedResponder, serve_in_thread
from tests.conftest import TRAIN_FLAGS, read_jsonl

pytestmark = pytest.mark.slow


def test_training_lowers_the_loss_and_writes_a_complete_model_dir(trained, tiny_run):
    history = json.loads((trained / "loss_history.json").read_text())
    losses = [e["loss"] for e in history if "loss" in e]
    assert len(losses) >= 8
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    assert any("eval_loss" in e for e in history), "validation loss on held-out characters is logged"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md", "loss.png"):
        assert (trained / name).is_file(), name
    assert "<|im_start|>" in (trained / "chat_template.jinja").read_text()
    meta = json.loads((trained / "opencharacter.json").read_text())
    assert meta["base_model"] == "embedded" and meta["system_prompt_version"] == "character_system@v1"
    # Shared outputs name the published base, so plain peft/transformers/vLLM load the adapter elsewhere;
    # our loader still resolves 'embedded' (the chat test below loads this very directory).
    adapter = json.loads((trained / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == meta["base_model_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in (trained / "README.md").read_text()
    # CPU defaults: 2 × 320 tokens fit in one 1024-token pass; 640 tokens make checkpointing worth it.
    plan = {"micro_batch": 2, "accumulation": 1, "gradient_checkpointing": True, "chunked_loss": True, "processes": 1}
    assert meta["memory_plan"] == plan and meta["peak_rss_bytes"] > 0
    assert meta["steps"] == 8 and meta["validation_examples"] > 0 and meta["truncated"] >= 0
    split = json.loads((trained / "split.json").read_text())
    assert split["validation_characters"] and not set(split["validation_characters"]) & set(split["train_characters"])
    held = set(split["validation_characters"])
    dialogues = read_jsonl(tiny_run / "dialogues.jsonl")
    assert sum(d["character_id"] in held for d in dialogues) == meta["validation_examples"]
    assert (trained / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_from_the_last_checkpoint(tiny_run, tmp_path, run_cli):
    out = tmp_path / "m2"
    flags = ("--run", tiny_run, "--out", out, *TRAIN_FLAGS)
    config = tmp_path / "train.yaml"
    config.write_text("train:\n  save_steps: 2\n", encoding="utf-8")
    assert run_cli("train", *flags, "--max-steps", 2, "--config", config)[0] == 0
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    code, stdout, err = run_cli("train", *flags, "--max-steps", 3, "--config", config, "--resume")
    assert code == 0, err
    assert "memory: peak RSS" in stdout + err and "step 3/3" in err and "ETA" in err
    history = json.loads((out / "loss_history.json").read_text())
    steps = [e["step"] for e in history if "loss" in e]
    # The resumed run starts at step 3: steps 1-2 come from the checkpoint's state, not from retraining.
    assert steps[-1] == 3 and json.loads((out / "opencharacter.json").read_text())["steps"] == 3
    assert (out / "checkpoints" / "checkpoint-3").is_dir()
    code, _, err = run_cli("train", *flags, "--max-steps", 2)
    assert code == 2 and "pass --resume" in err


def test_one_shot_chat_with_the_trained_adapter(trained, tiny_run, run_cli):
    characters = read_jsonl(tiny_run / "characters.jsonl")
    names = [c["profile"]["name"] for c in characters]
    duplicated = next(n for n in names if names.count(n) > 1)  # the fake backend has 8 names for 8 personas
    code, _, err = run_cli("chat", "--model", trained, "--run", tiny_run, "--character", duplicated, "--message", "hi")
    assert code == 2 and "matches several characters" in err and "use an id" in err
    code, out, err = run_cli(
        "chat", "--model", trained, "--run", tiny_run, "--character", characters[0]["character_id"],
        "--message", "Hello, who are you?",
        "--max-tokens", 24, "--temperature", 0,
    )  # fmt: skip
    assert code == 0, err
    assert out.strip()


def test_one_shot_chat_over_http_sends_the_character_system_prompt(tmp_path, run_cli, tiny_run):
    character = Character.model_validate(read_jsonl(tiny_run / "characters.jsonl")[0])
    card = write_card_json(card_from_character(character), tmp_path / "card.json")
    seen = []

    class Recording(ScriptedResponder):
        async def __call__(self, payload):
            seen.append(payload)
            return await super().__call__(payload)

    with serve_in_thread(Recording()) as url:
        code, out, err = run_cli(
            "chat", "--backend", "openai", "--base-url", url, "--model", "served", "--character", card,
            "--message", "Where were you born?",
        )  # fmt: skip
    assert code == 0, err
    assert out.strip() == "echo: Where were you born?"
    system = seen[0]["messages"][0]
    assert (
        system["role"] == "system"
        and character.persona in system["content"]
        and character.character in system["content"]
    )


def test_chat_with_an_unknown_short_character_is_a_clear_error(run_cli, tiny_run):
    code, _, err = run_cli("chat", "--run", tiny_run, "--character", "Nobody", "--message", "hi", "--backend", "fake")
    assert code == 2 and "too short to be a persona" in err


def test_merged_model_answers_exactly_like_base_plus_adapter(tiny_run, tmp_path, run_cli):
    import torch

    from opencharacter.models.loading import load_model_and_tokenizer

    out = tmp_path / "merged-run"
    code, _, err = run_cli("train", "--run", tiny_run, "--out", out, "--max-steps", 2, "--merge", *TRAIN_FLAGS)
    assert code == 0, err
    assert (out / "adapter_config.json").is_file() and (out / "merged" / "config.json").is_file()
    assert not (out / "merged" / "adapter_config.json").exists()
    adapter, tokenizer = load_model_and_tokenizer(str(out), "cpu")
    merged, _ = load_model_and_tokenizer(str(out / "merged"), "cpu")
    ids = tokenizer("Tell me about the sea, old sailor.", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        tuned, flat = adapter(ids).logits, merged(ids).logits
        with adapter.disable_adapter():
            untuned = adapter(ids).logits
    assert torch.allclose(tuned, flat, atol=1e-4), "merged weights must equal base + adapter"
    assert not torch.allclose(tuned, untuned, atol=1e-4), "two steps at this learning rate must move the model"


def test_full_fine_tuning_writes_full_weights_that_chat_loads(tiny_run, tmp_path, run_cli):
    out = tmp_path / "full"
    # A full fine-tune's learning rate (TRAIN_FLAGS' 1e-3 is LoRA's): at 1e-3 two steps wreck the model,
    # which then ends every answer before its first word.
    flags = ("--max-length", 320, "--batch-size", 2, "--learning-rate", 1e-5)
    code, _, err = run_cli("train", "--run", tiny_run, "--out", out, "--full", "--max-steps", 2, *flags)
    assert code == 0, err
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    meta = json.loads((out / "opencharacter.json").read_text())
    assert meta["method"] == "full" and meta["steps"] == 2
    character = read_jsonl(tiny_run / "characters.jsonl")[0]["character_id"]
    code, text, err = run_cli(
        "chat", "--model", out, "--run", tiny_run, "--character", character,
        "--message", "Hello!", "--max-tokens", 8, "--temperature", 0,
    )  # fmt: skip
    assert code == 0, err
    assert text.strip()
