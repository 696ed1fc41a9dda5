"""Misuse gets one clear line on stderr and a non-zero exit; nothing half-written is left behind."""

from __future__ import annotations

import pickle

import pytest

from opencharacter.errors import BackendError, InputError, MissingDependencyError, ParseError
from opencharacter.sources.bundled import sample_path


def test_malformed_persona_file_names_file_and_line(tmp_path, run_cli):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"persona": "fine"}\n{"persona": \n', encoding="utf-8")
    code, _, err = run_cli("profiles", "--personas", bad, "--out", tmp_path / "run", "--backend", "fake")
    assert code == 2
    assert err.strip() == f"error: {bad}:2: malformed JSON: Expecting value (column 13)"
    assert not (tmp_path / "run").exists()


def test_not_utf8_and_missing_files(tmp_path, run_cli):
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"A caf\xe9 owner.\n")
    code, _, err = run_cli("profiles", "--personas", latin, "--out", tmp_path / "run", "--backend", "fake")
    assert code == 2 and f"{latin}:1: not valid UTF-8" in err
    code, _, err = run_cli("profiles", "--personas", tmp_path / "nope.jsonl", "--out", tmp_path / "run")
    assert code == 2 and "nope.jsonl: file not found" in err


def test_invalid_config_is_reported_per_field(tmp_path, run_cli, personas_file):
    config = tmp_path / "c.yaml"
    config.write_text("backend:\n  backend: tpu\n  concurrency: 0\nprofiles:\n  max_attempts: 0\n", encoding="utf-8")
    code, _, err = run_cli("profiles", "--personas", personas_file, "--out", tmp_path / "r", "--config", config)
    assert code == 2
    assert "backend: backend: unknown backend 'tpu'" in err and "concurrency" in err
    assert len(err.strip().splitlines()) == 1
    broken = tmp_path / "broken.yaml"
    broken.write_text("backend:\n  model: [unclosed\n", encoding="utf-8")
    code, _, err = run_cli("run", broken)
    assert code == 2 and f"{broken}:" in err and "invalid YAML" in err
    extra = tmp_path / "extra.yaml"
    extra.write_text("personas: {path: x}\nbogus: 1\n", encoding="utf-8")
    code, _, err = run_cli("run", extra)
    assert code == 2 and "bogus: Extra inputs are not permitted" in err


def test_synthesize_without_profiles_says_what_to_do(tmp_path, run_cli):
    from opencharacter.sources.bundled import sample_path

    code, _, err = run_cli(
        "synthesize",
        "--run",
        tmp_path / "r",
        "--instructions",
        sample_path("instructions.jsonl"),
        "--backend",
        "fake",
    )
    assert code == 2 and f"{tmp_path / 'r'} is not a run directory" in err
    assert f"make one with `opencharacter profiles --out {tmp_path / 'r'}`" in err
    assert not (tmp_path / "r").exists()  # nothing is created for a command that needs a run


def test_every_command_on_a_non_run_says_the_same(tmp_path, run_cli):
    """One check, one message: export, filter, merge, batch import and synthesize --dry-run."""
    expected = f"{tmp_path} is not a run directory (no store.sqlite): make one with `opencharacter profiles"
    for args in (
        ("export", "--run", tmp_path, "--format", "messages"),
        ("filter", "--run", tmp_path),
        ("batch", "import", "--run", tmp_path, tmp_path / "out.jsonl"),
        ("synthesize", "--run", tmp_path, "--instructions", sample_path("instructions.jsonl"), "--backend", "fake",
         "--dry-run"),
    ):  # fmt: skip
        code, _, err = run_cli(*args)
        assert code == 2 and expected in err, (args, err)


def test_traceback_flag_shows_the_rest(tmp_path, run_cli):
    with pytest.raises(InputError):
        run_cli("--traceback", "profiles", "--personas", tmp_path / "nope.jsonl", "--out", tmp_path / "r")


@pytest.mark.parametrize(
    "error",
    [
        InputError("f.jsonl", 3, "bad"),
        BackendError("down", status=503, retryable=True, retry_after=1.0),
        ParseError("nope", raw="{", record_id="x"),
        MissingDependencyError("vllm", "vllm"),
    ],
)
def test_errors_pickle_for_ray(error):
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error) and str(clone) == str(error)


def test_example_config_is_valid():
    from pathlib import Path

    from opencharacter.cli.options import pipeline_config

    config = pipeline_config(Path(__file__).resolve().parents[1] / "examples" / "pipeline.yaml", {})
    assert config.backend.model == "embedded" and config.synthesis.per_instruction == 2
