"""What an installed opencharacter is: its wheel (LICENSE, py.typed, data), its floors, its public API,
a CLI that starts without `fcntl`, and example configs that work outside a checkout."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import opencharacter

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_API = [
    "BackendError", "ConfigError", "InputError", "MissingDependencyError", "OpenCharacterError", "ParseError",
    "__version__",
    "Backend", "BackendConfig", "CardV2", "CardV3", "Character", "ChatMessage", "ChatRequest", "Completion",
    "Dialogue", "EvalConfig", "ExecutorConfig", "FiltersConfig", "Instruction", "InstructionSource", "Persona",
    "PersonaSource", "PipelineConfig", "PreferencePair", "Profile", "ProfilesConfig", "RecipeConfig", "RunStore",
    "Sampling", "SynthesisConfig", "TrainConfig", "apply_filters", "build_backend", "card_from_character",
    "character_from_card", "evaluate", "export_gguf", "export_run", "import_release", "iter_instructions",
    "iter_personas", "load_instructions", "load_personas", "push_model", "push_run", "read_card", "register_backend",
    "render_system_prompt", "run_pipeline", "run_profiles", "run_recipe", "run_synthesis", "train_model",
    "write_card_json", "write_card_png",
]  # fmt: skip


def test_the_public_api_is_pinned_and_every_name_resolves():
    assert sorted(opencharacter.__all__) == sorted(PUBLIC_API) and len(set(opencharacter.__all__)) == len(PUBLIC_API)
    assert set(opencharacter._LAZY) == set(PUBLIC_API[7:])  # everything but the errors and the version is lazy
    for name in PUBLIC_API:
        assert getattr(opencharacter, name) is not None, name
    assert opencharacter.read_card.__module__ == "opencharacter.cards.files"
    assert opencharacter.train_model.__module__ == "opencharacter.train.trainer"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        opencharacter.nope  # noqa: B018
    assert set(PUBLIC_API) <= set(dir(opencharacter))


def test_import_opencharacter_loads_only_the_errors():
    code = (
        "import sys, opencharacter; "
        "heavy = ('torch', 'transformers', 'datasets', 'huggingface_hub', 'pydantic', 'opencharacter.pipeline'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _lock_uses_fcntl() -> bool:
    return "import fcntl" in (ROOT / "src" / "opencharacter" / "store" / "lock.py").read_text(encoding="utf-8")


@pytest.mark.skipif(_lock_uses_fcntl(), reason="store/lock.py still takes the run lock with fcntl (moves to filelock)")
def test_the_cli_starts_where_there_is_no_fcntl(tmp_path):
    """Windows has no fcntl: with the module blocked, `opencharacter --help` and a lock still work."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "from opencharacter.cli.app import main\n"
        "assert main(['--help']) == 0\n"
        "from opencharacter.store.lock import RunLock\n"
        f"with RunLock({str(tmp_path / 'run')!r}, 'check'): pass\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_no_module_on_the_cli_path_imports_fcntl_but_the_run_lock():
    importers = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "src").rglob("*.py")
        if re.search(r"^\s*import fcntl|^\s*from fcntl", path.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert set(importers) <= {"src/opencharacter/store/lock.py"}, importers


def _floors() -> dict[str, str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return {
        name.lower().replace("_", "-"): version
        for name, version in re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)', text)
        if name not in ("setuptools", "opencharacter")
    }


def test_every_floor_is_pinned_in_the_lowest_set():
    lowest = (ROOT / "constraints-lowest.txt").read_text(encoding="utf-8")
    pins = {
        name.lower().replace("_", "-"): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==([0-9.]+)", lowest, re.MULTILINE)
    }
    floors = _floors()
    untested = {"torch", "vllm", "ray", "pytest", "pytest-timeout", "ruff", "openai", "psutil"}
    missing = {
        name: floor for name, floor in floors.items() if name not in untested and pins.get(name) != _normal(floor)
    }
    assert missing == {}, f"floors without the same pin in constraints-lowest.txt: {missing}"
    assert floors["torch"] == "2.6" and floors["datasets"] == "4.7" and floors["trl"] == "1.0"


def _normal(version: str) -> str:
    parts = version.split(".")
    return ".".join(parts + ["0"] * (3 - len(parts)))


def test_the_wheel_carries_the_license_types_and_data(tmp_path):
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    result = subprocess.run([*build, str(ROOT)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next(tmp_path.glob("opencharacter-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = Parser().parsestr(archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
        license_text = archive.read(next(n for n in names if n.endswith("licenses/LICENSE"))).decode()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert license_text == (ROOT / "LICENSE").read_text(encoding="utf-8")
    for expected in (
        "opencharacter/py.typed", "opencharacter/examples/pipeline.yaml", "opencharacter/examples/recipe-cpu.yaml",
        "opencharacter/prompts/character_system.v1.jinja", "opencharacter/sources/samples/personas.jsonl",
    ):  # fmt: skip
        assert expected in names, expected
    assert metadata["License-Expression"] == "Apache-2.0"
    classifiers = metadata.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and "Programming Language :: Python :: 3.11" in classifiers
    assert any(url.startswith("Paper, https://arxiv.org/abs/2501.15427") for url in metadata.get_all("Project-URL"))
    requires = metadata.get_all("Requires-Dist")
    assert "datasets>=4.7" in requires and any(r.startswith("torch>=2.6") for r in requires)


def test_init_writes_examples_that_run_outside_a_checkout(tmp_path, run_cli, monkeypatch):
    target = tmp_path / "project"
    code, _, err = run_cli("init", target)
    assert code == 0, err
    pipeline = (target / "pipeline.yaml").read_text(encoding="utf-8")
    assert "src/opencharacter" not in pipeline and "samples/personas.jsonl" in pipeline
    assert (target / "samples" / "personas.jsonl").read_bytes() == (
        ROOT / "src/opencharacter/sources/samples/personas.jsonl"
    ).read_bytes()
    assert {p.name for p in target.glob("*.yaml")} == {p.name for p in (ROOT / "examples").glob("*.yaml")}
    monkeypatch.chdir(target)
    code, out, err = run_cli("run", "pipeline.yaml", "--backend", "fake", "--dry-run")
    assert code == 0, err
    assert "profiles" in out + err
    code, _, err = run_cli("init", target)
    assert code == 2 and "already exist" in err and "--force" in err
    assert run_cli("init", target, "--force")[0] == 0
