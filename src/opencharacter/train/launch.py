"""Training in its own processes: how `recipe` trains every student, and `train` with `train.launcher`.

Why a child process: a student's memory (GPU memory included) goes back when its process ends, so
the next student, the evaluation's vLLM engine or the next phase start from a clean slate; and a
launcher (torchrun, `accelerate launch`) can only start a command, never a function call.

The child is `python -m opencharacter.train.worker SPEC` (train/worker.py), alone or as the ranks of
a launcher. SPEC holds the settings; the ranks write their outcome beside it (rank 0: the
`TrainResult`; a rank that fails: its exception, which pickles), so the parent returns the same result
or raises the same error, with the same one line and exit code, as an in-process `train()` would.
"""

from __future__ import annotations

import json
import pickle
import sys
import tempfile
from pathlib import Path

from opencharacter.config import LauncherConfig, TrainConfig
from opencharacter.errors import ConfigError
from opencharacter.executors.processes import PhaseFailed, ending, run_command
from opencharacter.train.common import TrainResult

WORKER = ("-m", "opencharacter.train.worker")
RESULT = "result.pickle"


def launch_command(launcher: LauncherConfig | None, spec: Path) -> list[str]:
    """The command that runs the worker on `spec`: plain Python, torchrun, or `accelerate launch`.

    Launchers are run as modules of this interpreter (`python -m torch.distributed.run`, not whatever
    `torchrun` is first on PATH), so the ranks import this very installation. torchrun starts a
    single-machine job (`--standalone`: a free port, no rendezvous server to set up).
    """
    worker = [*WORKER, str(spec)]
    if launcher is None:
        return [sys.executable, *worker]
    processes = str(launcher.nproc_per_node)
    if launcher.config is not None:
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", launcher.config,
                "--num_processes", processes, *launcher.args, *worker]  # fmt: skip
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", processes,
            *launcher.args, *worker]  # fmt: skip


def train_in_child(config: TrainConfig, data: str | Path, out: str | Path, resume: bool = False) -> TrainResult:
    """`train(config, data, out, resume)` in child processes started as `config.launcher` says."""
    accelerate = config.launcher.config if config.launcher is not None else None
    if accelerate is not None and not Path(accelerate).is_file():  # one line now, not a launcher traceback
        raise ConfigError(f"train.launcher.config: {accelerate} is not a file")
    with tempfile.TemporaryDirectory(prefix="opencharacter-train-") as work:
        spec = Path(work) / "spec.json"
        spec.write_text(
            json.dumps({"settings": config.model_dump(mode="json"), "data": str(data), "out": str(out),
                        "resume": resume, "outcome": work}),
            encoding="utf-8",
        )  # fmt: skip
        code = run_command(launch_command(config.launcher, spec))
        return _outcome(Path(work), code)


def _outcome(work: Path, code: int) -> TrainResult:
    """Rank 0's result; else the error of the lowest rank that wrote one; else why nothing came back."""
    if code == 0 and (work / RESULT).is_file():
        result: TrainResult = pickle.loads((work / RESULT).read_bytes())
        return result
    errors = sorted(work.glob("error-*.pickle"), key=lambda path: int(path.stem.removeprefix("error-")))
    if errors:
        error, text = pickle.loads(errors[0].read_bytes())
        if text:
            error.add_note(f"in the training process ({errors[0].stem}):\n{text.rstrip()}")
        raise error
    raise PhaseFailed(f"training ended without a result ({ending(code)}); its output is above")


__all__ = ["launch_command", "train_in_child"]
