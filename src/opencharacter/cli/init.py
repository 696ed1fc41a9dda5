"""`opencharacter init`: the example configs and the sample data they read, in a directory of your own.

The examples in the repository's `examples/` name the samples by their path in a checkout
(`src/opencharacter/sources/samples/…`); an installed package has no such path. `init` copies the
examples that ship inside the package, with the sample files beside them and the paths rewritten
to point there, so `opencharacter run pipeline.yaml` works from a plain `pip install`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from opencharacter.cli.report import console
from opencharacter.errors import ConfigError
from opencharacter.fileio import atomic_open

CHECKOUT_SAMPLES = "src/opencharacter/sources/samples/"
SAMPLES_DIR = "samples"


def example_files() -> dict[str, str]:
    """Example name → YAML text, as shipped in the package (`opencharacter/examples/*.yaml`)."""
    folder = resources.files("opencharacter") / "examples"
    if not folder.is_dir():
        raise ConfigError("this installation has no example configs (opencharacter/examples is missing)")
    return {item.name: item.read_text(encoding="utf-8") for item in folder.iterdir() if item.name.endswith(".yaml")}


def sample_files() -> dict[str, bytes]:
    folder = resources.files("opencharacter.sources") / "samples"
    return {item.name: item.read_bytes() for item in folder.iterdir() if item.name.endswith(".jsonl")}


def init_project(directory: Path, force: bool = False) -> list[Path]:
    """Write the examples and samples into `directory`; existing files are kept unless `force`."""
    examples = {name: text.replace(CHECKOUT_SAMPLES, f"{SAMPLES_DIR}/") for name, text in example_files().items()}
    planned: dict[Path, str | bytes] = {directory / name: text for name, text in sorted(examples.items())}
    planned |= {directory / SAMPLES_DIR / name: data for name, data in sorted(sample_files().items())}
    existing = [path for path in planned if path.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing[:3]) + (" …" if len(existing) > 3 else "")
        raise ConfigError(f"{names} already exist{'s' if len(existing) == 1 else ''}; pass --force to overwrite")
    for path, content in planned.items():
        with atomic_open(path, "wb" if isinstance(content, bytes) else "w") as stream:
            stream.write(content)
    return list(planned)


def init_command(
    directory: Annotated[Path, typer.Argument(help="Where to write them (created if missing).")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that already exist.")] = False,
) -> None:
    """Write the example configs (pipeline, CPU and paper recipes) and the bundled samples they use."""
    written = init_project(directory, force)
    yamls = [p for p in written if p.suffix == ".yaml"]
    console.print(f"wrote {len(yamls)} example configs and {len(written) - len(yamls)} sample files to {directory}")
    for path in yamls:
        console.print(f"  {path}")
    console.print(f"try: cd {directory} && opencharacter run pipeline.yaml")
