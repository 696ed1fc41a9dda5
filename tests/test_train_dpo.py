"""`train --method dpo`: preference pairs in, a LoRA adapter out that plain peft and our own chat load.

The real tests train the embedded model for one step on hand-made pairs (an in-character answer
against a generic assistant one) under the real character system prompt.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
from huggingface_hub import ModelCard

from opencharacter.config import TrainConfig
from opencharacter.errors import ConfigError, InputError
from opencharacter.prompts.system_prompt import render_system_prompt
from opencharacter.train.preferences import load_preferences

CHARACTERS = {  # id: (persona, profile, an answer in character)
    "ines": (
        "A lighthouse keeper who restores clocks.",
        "Ines, 61, keeps the Finisterre light.",
        "I wind the clockwork at dusk and read the tide tables by lamp.",
    ),
    "bo": (
        "A jazz drummer from New Orleans.",
        "Bo, 34, plays brushes at Sunday gigs.",
        "Man, the snare talks to me; a Sunday gig on Frenchmen Street is my church.",
    ),
    "mei": (
        "A botanist who studies mosses.",
        "Mei, 45, counts spores in a damp lab.",
        "Mosses hold water like sponges; I count their spores under the microscope.",
    ),
    "tom": (
        "A retired sailor who paints harbours.",
        "Tom, 72, sailed round Cape Horn twice.",
        "I paint the harbour at dawn, the sails as they looked off Cape Horn.",
    ),
}
QUESTIONS = ["What do you do on a quiet evening?", "Tell me about your work."]
GENERIC = "As an AI language model, I do not have personal experiences. How can I help you today?"
FLAGS = ("--max-length", 128, "--batch-size", 1, "--learning-rate", 1e-3)


def pair_rows() -> list[dict]:
    rows = []
    for character, (persona, profile, answer) in CHARACTERS.items():
        system = render_system_prompt(persona, profile)
        for index, question in enumerate(QUESTIONS):
            rows.append(
                {
                    "pair_id": f"{character}-{index}",
                    "question_id": f"q{index}",
                    "character_id": character,
                    "strategy": ("generate", "rewrite")[index],
                    "prompt": [{"role": "system", "content": system}, {"role": "user", "content": question}],
                    "chosen": answer,
                    "rejected": GENERIC,
                    "chosen_rank": 1,
                    "rejected_rank": 4,
                }
            )
    return rows


@pytest.fixture(scope="module")
def preferences(tmp_path_factory):
    path = tmp_path_factory.mktemp("prefs") / "preferences.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in pair_rows()), encoding="utf-8")
    return path


# --- data and CLI errors (no model) -------------------------------------------------------------


def test_pairs_load_filter_by_strategy_and_become_trl_conversations(preferences):
    data = load_preferences(preferences.parent, ["rewrite"])  # a run directory holding preferences.jsonl
    assert len(data.examples) == len(CHARACTERS) and {e.pair.strategy for e in data.examples} == {"rewrite"}
    row = data.examples[0].as_trl_row()
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["chosen"] == [{"role": "assistant", "content": CHARACTERS["ines"][2]}]
    assert row["rejected"] == [{"role": "assistant", "content": GENERIC}]


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ('{"pair_id": "x"', "malformed JSON"),
        ({"chosen_rank": "first"}, "not a preference pair: chosen_rank"),
        ({"extra": 1}, "not a preference pair: extra"),
        ({"prompt": [{"role": "user", "content": "hi"}]}, "must start with the character's system message"),
        ({"rejected": "  "}, "must not be empty"),
    ],
)
def test_a_bad_preferences_line_is_one_error_naming_file_and_line(tmp_path, broken, problem):
    rows = [json.dumps(r) for r in pair_rows()[:3]]
    rows[1] = broken if isinstance(broken, str) else json.dumps({**pair_rows()[1], **broken})
    path = tmp_path / "preferences.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_preferences(path)
    assert str(caught.value).startswith(f"{path}:2: ") and problem in str(caught.value)


def test_cli_errors_exit_2_with_one_line(tmp_path, preferences, run_cli):
    run = tmp_path / "run"
    run.mkdir()
    (run / "dialogues.jsonl").write_text("", encoding="utf-8")
    code, _, err = run_cli("train", "--method", "dpo", "--run", run, "--out", tmp_path / "o")
    assert code == 2 and "no preferences.jsonl there" in err and "synthesis.candidates" in err
    code, _, err = run_cli(
        "train", "--method", "dpo", "--data", preferences, "--out", tmp_path / "o", "--init-adapter", tmp_path / "sfft"
    )
    assert code == 2 and "--init-adapter" in err and "no such adapter directory" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli("train", "--method", "dpo", "--full", "--data", preferences, "--out", tmp_path / "o")
    assert code == 2 and "contradicts --full" in err
    code, _, err = run_cli("train", "--method", "dpo", "--data", tmp_path / "nope.jsonl", "--out", tmp_path / "o")
    assert code == 2 and "no such preferences file" in err


def test_init_adapter_must_be_an_adapter_on_the_named_base(tmp_path):
    from opencharacter.train.trainer import train

    with pytest.raises(ConfigError, match="not a LoRA adapter directory"):
        train(TrainConfig(method="dpo", init_adapter=str(tmp_path)), tmp_path, tmp_path / "out")
    (tmp_path / "adapter_config.json").write_text('{"base_model_name_or_path": "org/other"}', encoding="utf-8")
    with pytest.raises(ConfigError, match="trained on org/other, not on --model embedded"):
        train(TrainConfig(method="dpo", model="embedded", init_adapter=str(tmp_path)), tmp_path, tmp_path / "out")


# --- real training (embedded SmolLM2, one step) ------------------------------------------------


@pytest.fixture(scope="module")
def dpo_out(trained, preferences, tmp_path_factory):
    """DPO after SFT: one step (no warm-up) from the shared SFT adapter (`trained`, conftest.py), on the
    'generate' pairs only (one per character: 3 to train, 1 held out).
    Returns the output directory, the exit code and what the command printed."""
    from opencharacter.cli.app import main

    root = tmp_path_factory.mktemp("dpo")
    config = root / "train.yaml"
    config.write_text("train:\n  warmup_ratio: 0\n", encoding="utf-8")
    args = ["train", "--method", "dpo", "--init-adapter", trained, "--data", preferences, "--out", root / "dpo",
            "--max-steps", 1, "--beta", 0.2, "--config", config, "--strategy", "generate", *FLAGS]  # fmt: skip
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = main([str(a) for a in args])
    return root / "dpo", code, printed.getvalue()


@pytest.mark.slow
def test_dpo_from_an_sft_adapter_prefers_the_chosen_answers_on_held_out_characters(dpo_out, trained):
    out, code, printed = dpo_out
    assert code == 0, printed
    assert "trained 1 steps on 3 preference pairs (1 from held-out characters" in printed
    assert "DPO rewards: training accuracy" in printed and "held-out characters accuracy 1.00" in printed
    assert "peak RSS" in printed and "step 1/1 · loss 0.6931 · reward accuracy 0.00" in printed
    history = json.loads((out / "loss_history.json").read_text())
    first = next(e for e in history if "loss" in e)
    # The reference is the SFT model, where the policy starts: at step 1 they agree exactly. (Were the
    # reference the bare base, the SFT adapter's own log-ratios would already move this loss.)
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-5) and first["rewards/margins"] == 0
    meta = json.loads((out / "opencharacter.json").read_text())
    assert meta["method"] == "dpo" and meta["init_adapter"] == str(trained) and meta["config"]["dpo_beta"] == 0.2
    assert meta["rewards"]["validation_accuracy"] == 1.0 and meta["rewards"]["validation_margin"] > 0
    # One step moves held-out characters' pairs in the right direction.
    assert meta["final_validation_loss"] < math.log(2)
    split = json.loads((out / "split.json").read_text())
    assert len(split["validation_characters"]) == 1 and split["train_characters"]
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert not (out / "ref").exists(), "the frozen reference copy is not part of the result"
    assert "dpo" in ModelCard.load(out / "README.md").data.tags  # the card's YAML, through huggingface_hub
    assert "reference model: SFT adapter" in (out / "README.md").read_text()


@pytest.mark.slow
def test_the_dpo_adapter_loads_with_plain_peft_and_with_our_chat(dpo_out, trained, run_cli):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from opencharacter.models.loading import load_model_and_tokenizer, resolve_model_path

    out, code, printed = dpo_out
    assert code == 0, printed
    tuned, sft = (load_file(d / "adapter_model.safetensors") for d in (out, trained))
    assert tuned.keys() == sft.keys(), "the DPO adapter is the SFT adapter, continued (same rank and modules)"
    assert any(not torch.equal(tuned[k], sft[k]) for k in tuned), "DPO moved the SFT adapter"
    ours, tokenizer = load_model_and_tokenizer(str(out), "cpu")
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(resolve_model_path("embedded")), str(out))
    ids = tokenizer("Tell me about the sea.", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        assert torch.allclose(ours(ids).logits, plain(ids).logits, atol=1e-5)
    code, text, err = run_cli(
        "chat", "--model", out, "--character", "A lighthouse keeper who restores clocks.",
        "--message", "Hello!", "--max-tokens", 6, "--temperature", 0,
    )  # fmt: skip
    assert code == 0, err
    assert text.strip()
