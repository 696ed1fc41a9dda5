"""The `export` formats beyond the run's dialogue files: GGUF of a trained model, Character Cards V3,
and the exports' own dataset card. `cli/synth.py`'s `export` hands them here."""

from __future__ import annotations

from pathlib import Path

import typer

from opencharacter.errors import ConfigError


def special_exports(
    run: Path | None,
    names: list[str],
    out: Path | None,
    model: Path | None,
    gguf_types: list[str] | None,
    card_version: int,
) -> list[str]:
    """Write `gguf` (from `model`) and version-3 `cards`; return the formats left for the run's exporter."""
    if card_version not in (2, 3):
        raise ConfigError(f"--card-version must be 2 or 3, got {card_version}")
    if "gguf" not in names and (model is not None or gguf_types):
        raise ConfigError("--model and --gguf-type belong to --format gguf")
    if "gguf" in names:
        if model is None:
            raise ConfigError("--format gguf needs --model DIR (a `train --out` directory; its adapter is merged in)")
        from opencharacter.export.gguf import export_gguf

        for path in export_gguf(model, gguf_types or ["f16"], out):  # type: ignore[arg-type]
            typer.echo(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MB)")
    rest = [name for name in names if name != "gguf"]
    if rest and run is None:
        raise ConfigError(f"--format {', '.join(rest)} exports a run: give --run DIR")
    if "cards" in rest and card_version == 3:
        from opencharacter.cards.export import export_run_cards

        path, count = export_run_cards(run, out or run / "exports" / "cards", version=3)
        typer.echo(f"wrote {count} character cards (V3 with a V2 backfill, JSON and PNG) to {path}")
        rest = [name for name in rest if name != "cards"]
    return rest


def refresh_cards(run: Path | None) -> None:
    """Rewrite the run's dataset cards, so `exports/README.md` lists what is there now."""
    from opencharacter.export.card import write_card
    from opencharacter.store import RunStore
    from opencharacter.store.lock import RunLock
    from opencharacter.store.run_store import STORE_FILE

    if run is None or not (run / STORE_FILE).is_file():
        return

    with RunLock(run, "export"):
        store = RunStore(run)
        try:
            write_card(store)
        finally:
            store.close()
