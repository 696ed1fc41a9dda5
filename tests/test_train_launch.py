"""Training under a launcher (torchrun, real ranks over gloo) and full fine-tuning's precision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opencharacter.config import TrainConfig
from opencharacter.train.common import precision

FLAGS = ("--max-steps", "3", "--max-length", "320", "--batch-size", "1", "--global-batch-size", "4")


def test_full_fine_tuning_keeps_float32_master_weights_under_bf16_autocast():
    import torch

    dtype, autocast = precision(TrainConfig(method="full"), cuda=True, bf16_supported=True)
    assert dtype is torch.float32 and autocast
    dtype, autocast = precision(TrainConfig(method="lora"), cuda=True, bf16_supported=True)
    assert dtype is torch.bfloat16 and autocast  # a frozen base may stay bf16: peft's adapters are float32

    def changed_by_one_step(weights_dtype: torch.dtype) -> float:
        """Share of weights (scale 0.02) that one AdamW step at 1e-5 actually moves, bf16 autocast on."""
        torch.manual_seed(0)
        layer = torch.nn.Linear(256, 256, bias=False)
        torch.nn.init.normal_(layer.weight, std=0.02)
        layer.to(weights_dtype)
        before = layer.weight.detach().clone()
        optimiser = torch.optim.AdamW(layer.parameters(), lr=1e-5, weight_decay=0.0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = layer(torch.randn(8, 256)).float().pow(2).mean()
        loss.backward()
        optimiser.step()
        return (layer.weight.detach() != before).float().mean().item()

    # The weights the precision plan trains move; pure bf16 weights (what full FT used to be) mostly do not.
    assert changed_by_one_step(dtype if dtype is torch.float32 else torch.float32) > 0.99
    assert changed_by_one_step(torch.bfloat16) < 0.5


def _train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_torchrun_two_ranks_train_like_one_process_with_the_same_global_batch(tiny_run, tmp_path):
    data = str(tiny_run / "dialogues.jsonl")  # torchrun's own parser takes `--run` for its `--run-path`
    one = _train([sys.executable, "-m", "opencharacter", "train", "--data", data, "--out", "one", *FLAGS], tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _train(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "opencharacter", "train", "--data", data, "--out", "two", *FLAGS],
        tmp_path,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-2000:]
    # Rank 0 alone reports and writes: one summary line, one adapter, card and metadata file.
    assert (two.stdout + two.stderr).count("trained 3 steps") == 1
    out = tmp_path / "two"
    for name in ("adapter_model.safetensors", "README.md", "opencharacter.json", "split.json"):
        assert (out / name).is_file(), name
    metas = [json.loads((tmp_path / d / "opencharacter.json").read_text()) for d in ("one", "two")]
    assert metas[0]["steps"] == metas[1]["steps"] == 3
    assert metas[0]["memory_plan"]["accumulation"] == 4 and metas[0]["memory_plan"]["processes"] == 1
    assert metas[1]["memory_plan"]["accumulation"] == 2 and metas[1]["memory_plan"]["processes"] == 2

    def losses(d: str) -> list[float]:
        history = json.loads((tmp_path / d / "loss_history.json").read_text())
        return [e["loss"] for e in history if "loss" in e]

    # Same global batches in the same order: the same losses (a missing rescale halved them).
    assert losses("one") == pytest.approx(losses("two"), rel=0.02)


@pytest.mark.slow
def test_fsdp_full_fine_tuning_on_two_cpu_ranks_saves_whole_weights(tiny_run, tmp_path):
    config = tmp_path / "fsdp.yaml"
    config.write_text(
        "train:\n  method: full\n  fsdp: full_shard auto_wrap\n"
        "  fsdp_config: {transformer_layer_cls_to_wrap: [LlamaDecoderLayer]}\n",
        encoding="utf-8",
    )
    run = _train(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "opencharacter", "train", "--data", str(tiny_run / "dialogues.jsonl"), "--config", str(config),
         "--out", "fsdp", "--learning-rate", "1e-5", *FLAGS],
        tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    from transformers import AutoModelForCausalLM

    # Saved through the trainer: the shards gathered into one whole model that loads with nothing missing.
    _, info = AutoModelForCausalLM.from_pretrained(tmp_path / "fsdp", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert json.loads((tmp_path / "fsdp" / "opencharacter.json").read_text())["steps"] == 3


def test_the_multi_gpu_examples_are_valid_configs():
    import yaml

    from opencharacter.config.base import load_yaml
    from opencharacter.config.recipe import RecipeConfig

    examples = Path(__file__).resolve().parents[1] / "examples"
    full = TrainConfig.model_validate(load_yaml(examples / "train-8b-full.yaml")["train"])
    assert full.method == "full" and full.adam_beta2 == 0.95 and full.lr_scheduler_kwargs["lr_end"] == 1e-6
    paper = RecipeConfig.model_validate(load_yaml(examples / "recipe-paper.yaml"))
    faithful = RecipeConfig.model_validate(load_yaml(examples / "recipe-paper-faithful.yaml"))
    assert paper.train.adam_beta2 == faithful.train.adam_beta2 == 0.95
    assert paper.train.eval_steps >= 500 and paper.train.save_steps >= 1000
    assert paper.synthesis.candidates > 1 and faithful.synthesis.candidates == 1  # the paper: no selection
    for recipe in (paper, faithful):  # 8 GPUs, FSDP, the global batch whatever the number of GPUs
        assert recipe.train.launcher.nproc_per_node == 8 and recipe.train.global_batch_size == 64
        assert (examples.parent / recipe.train.launcher.config).is_file()
    assert paper.dpo.launcher.nproc_per_node == 8 and paper.dpo.launcher.config is None
    for name in ("zero2", "zero3"):
        assert json.loads((examples / "deepspeed" / f"{name}.json").read_text())["zero_optimization"]["stage"]
    kinds = {yaml.safe_load((examples / "accelerate" / f).read_text())["distributed_type"] for f in
             ("ddp.yaml", "fsdp.yaml", "deepspeed-zero3.yaml")}  # fmt: skip
    assert kinds == {"MULTI_GPU", "FSDP", "DEEPSPEED"}


def test_a_launcher_setting_becomes_the_command_that_starts_the_worker(tmp_path):
    from opencharacter.config import LauncherConfig
    from opencharacter.train.launch import launch_command

    spec = tmp_path / "spec.json"
    worker = ["-m", "opencharacter.train.worker", str(spec)]
    assert launch_command(None, spec) == [sys.executable, *worker]
    torchrun = LauncherConfig(nproc_per_node=8, args=["--master_port", "29600"])
    assert launch_command(torchrun, spec) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "8",
        "--master_port", "29600", *worker,
    ]  # fmt: skip
    accelerate = LauncherConfig(nproc_per_node=4, config="examples/accelerate/fsdp.yaml")
    assert launch_command(accelerate, spec) == [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", "examples/accelerate/fsdp.yaml",
        "--num_processes", "4", *worker,
    ]  # fmt: skip


def test_the_parent_gets_rank_zeros_result_or_the_lowest_failing_ranks_error(tmp_path):
    import pickle

    from opencharacter.errors import InputError
    from opencharacter.executors.processes import PhaseFailed
    from opencharacter.train.common import TrainResult
    from opencharacter.train.launch import _outcome

    done = TrainResult(out=tmp_path, train_examples=3, validation_examples=1, truncated=0, steps=2)
    (tmp_path / "result.pickle").write_bytes(pickle.dumps(done))
    assert _outcome(tmp_path, 0) == done
    (tmp_path / "result.pickle").unlink()
    for rank in (10, 2):  # ranks sort as numbers, not text: rank 2 comes before rank 10
        error = InputError("d.jsonl", rank, "bad")
        (tmp_path / f"error-{rank}.pickle").write_bytes(pickle.dumps((error, "Traceback ...")))
    with pytest.raises(InputError, match=r"d\.jsonl:2: bad") as raised:
        _outcome(tmp_path, 2)
    assert "error-2" in "".join(raised.value.__notes__)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PhaseFailed, match="signal 9 — out of memory"):
        _outcome(empty, -9)
    with pytest.raises(PhaseFailed, match="exit status 3"):
        _outcome(empty, 3)


def test_changing_only_the_launcher_reuses_a_recipe_student():
    from opencharacter.config import LauncherConfig
    from opencharacter.recipe.experiment import _student_key

    one = TrainConfig()
    eight = one.model_copy(update={"launcher": LauncherConfig(nproc_per_node=8)})
    assert _student_key(one, "digest") == _student_key(eight, "digest")
    assert _student_key(one, "digest") != _student_key(one.model_copy(update={"learning_rate": 1e-5}), "digest")


def test_a_missing_accelerate_config_is_one_line_before_anything_starts(tmp_path, tiny_run, run_cli):
    config = tmp_path / "train.yaml"
    config.write_text("train: {launcher: {nproc_per_node: 2, config: nowhere/fsdp.yaml}}\n", encoding="utf-8")
    code, _, err = run_cli("train", "--data", tiny_run / "dialogues.jsonl", "--config", config, "--out", tmp_path / "m")
    assert code == 2 and "train.launcher.config: nowhere/fsdp.yaml is not a file" in err
    assert "Traceback" not in err and not (tmp_path / "m").exists()


def test_run_command_passes_ctrl_c_on_and_reports_an_interruption(tmp_path):
    import signal
    import threading

    from opencharacter.errors import Interrupted
    from opencharacter.executors.processes import run_command

    marker = tmp_path / "stopped"
    child = (
        "import signal, sys, time, pathlib\n"
        f"def stop(*_): pathlib.Path({str(marker)!r}).write_text('saved'); sys.exit(130)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        f"pathlib.Path({str(tmp_path / 'ready')!r}).touch()\n"
        "time.sleep(60)\n"
    )
    assert run_command([sys.executable, "-c", "import sys; sys.exit(3)"]) == 3

    def interrupt_when_ready() -> None:
        for _ in range(600):
            if (tmp_path / "ready").exists():
                break
            threading.Event().wait(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_ready, daemon=True).start()
    with pytest.raises(Interrupted):
        run_command([sys.executable, "-c", child])
    assert marker.read_text() == "saved"  # the child got the signal and stopped cleanly


def test_an_error_in_the_training_process_is_the_same_error_with_the_same_line(tmp_path):
    from opencharacter.errors import InputError
    from opencharacter.train.launch import train_in_child

    data = tmp_path / "dialogues.jsonl"
    data.write_text('{"not": "a dialogue"\n', encoding="utf-8")
    from opencharacter.train.trainer import train

    with pytest.raises(InputError) as in_process:
        train(TrainConfig(max_steps=1), data, tmp_path / "m")
    with pytest.raises(InputError) as in_child:
        train_in_child(TrainConfig(max_steps=1), data, tmp_path / "m")
    assert str(in_child.value) == str(in_process.value) and "dialogues.jsonl:1: malformed JSON" in str(in_child.value)
    assert "in the training process" in "".join(in_child.value.__notes__)  # its traceback, for a bug report
    assert not (tmp_path / "m").exists()
