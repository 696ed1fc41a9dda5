from __future__ import annotations

import json
from pathlib import Path

import pytest

from opencharacter.cli.app import main
from opencharacter.sources.bundled import sample_path

SHARED_PERSONAS = Path(__file__).resolve().parents[2] / "shared" / "data" / "personahub_sample.jsonl"


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


@pytest.fixture
def write_jsonl(tmp_path):
    def write(name: str, rows: list) -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path

    return write


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def personas_file() -> Path:
    """Real Persona Hub data when the shared folder is beside the checkout, else the bundled samples."""
    if SHARED_PERSONAS.exists():
        return SHARED_PERSONAS
    return sample_path("personas.jsonl")


# Real SFT on the embedded model, shared by the train/chat and DPO tests (paid once per session).
TRAIN_FLAGS = ("--max-length", 320, "--batch-size", 2, "--learning-rate", 1e-3)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, personas_file):
    run = tmp_path_factory.mktemp("train") / "run"
    assert (
        main(
            ["profiles", "--personas", str(personas_file), "--out", str(run), "--limit", "8", "--backend", "fake", "-q"]
        )
        == 0
    )
    assert main(["synthesize", "--run", str(run), "--instructions", str(sample_path("instructions.jsonl")),
                 "--limit", "8", "--per-instruction", "2", "--backend", "fake", "-q"]) == 0  # fmt: skip
    return run


@pytest.fixture(scope="session")
def trained(tiny_run, tmp_path_factory):
    """An SFT LoRA adapter (8 steps on the embedded model): chat tests and DPO's init_adapter share it."""
    out = tmp_path_factory.mktemp("model") / "m1"
    code = main(["train", "--run", str(tiny_run), "--out", str(out), "--max-steps", "8", *map(str, TRAIN_FLAGS)])
    assert code == 0
    return out
