"""What `train --gguf` and `train --push-to-hub` do once the model is saved (checked before training)."""

from __future__ import annotations

from pathlib import Path

from opencharacter.cli.report import console
from opencharacter.errors import ConfigError


def check_release_steps(gguf: list[str] | None, push_to_hub: str | None) -> None:
    """Fail now on what would fail after training: a GGUF type, a repo id, a missing Hub token."""
    from opencharacter.export.gguf import GGUF_TYPES

    for kind in gguf or []:
        if kind not in GGUF_TYPES:
            raise ConfigError(f"--gguf {kind!r}: choose one of {', '.join(GGUF_TYPES)}")
    if push_to_hub is None:
        return
    from opencharacter.export.hub import check_repo_id

    check_repo_id(push_to_hub)
    from huggingface_hub import get_token

    if not get_token():
        raise ConfigError("--push-to-hub: no Hub token; log in with `hf auth login` or set HF_TOKEN")


def after_training(out: Path, gguf: list[str] | None, push_to_hub: str | None) -> None:
    if gguf:
        from opencharacter.export.gguf import export_gguf

        for path in export_gguf(out, gguf):  # type: ignore[arg-type]
            console.print(f"GGUF: {path} ({path.stat().st_size / 2**20:.0f} MB)")
    if push_to_hub:
        from opencharacter.cli.push import show_plan
        from opencharacter.export.hub import push_model

        plan, url = push_model(out, push_to_hub, private=True)
        show_plan(plan, url, dry_run=False)
