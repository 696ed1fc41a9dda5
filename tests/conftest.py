from __future__ import annotations

import json
from pathlib import Path

import pytest

from opencharacter.cli.app import main

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
    from opencharacter.samples import sample_path

    return sample_path("personas.jsonl")
