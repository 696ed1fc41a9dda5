"""`python -m opencharacter.train.worker SPEC`: one training job as train/launch.py starts it, alone or
as one rank of torchrun / `accelerate launch`.

SPEC is the JSON the parent wrote: settings, data, output directory, resume, and the folder for the
outcome. Rank 0 writes the `TrainResult` there; a rank that fails writes its exception (ours all
pickle; anything else is wrapped) with its traceback, and exits with the error's exit code.
"""

from __future__ import annotations

import json
import pickle
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from opencharacter.executors.processes import crossing
from opencharacter.train.distributed import rank


def _write(path: Path, outcome: Any) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(pickle.dumps(outcome))
    partial.replace(path)  # the parent never reads half an outcome


def main(argv: list[str] | None = None) -> int:
    spec = json.loads(Path((argv if argv is not None else sys.argv[1:])[0]).read_text(encoding="utf-8"))
    work = Path(spec["outcome"])
    # A shell that starts a job in the background leaves SIGINT ignored, which exec keeps: Ctrl-C
    # forwarded by the parent must still stop training (what was checkpointed stays).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        from opencharacter.config import TrainConfig
        from opencharacter.train.launch import RESULT
        from opencharacter.train.trainer import train

        settings = TrainConfig.model_validate(spec["settings"])
        result = train(settings, spec["data"], spec["out"], resume=spec["resume"])
    except KeyboardInterrupt:
        return 130  # what was checkpointed stays; the parent reports the interruption
    except Exception as exc:
        error = crossing(exc)
        _write(work / f"error-{rank()}.pickle", (error, traceback.format_exc()))
        return int(getattr(error, "exit_code", 1))
    if result.main_process:
        _write(work / RESULT, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
