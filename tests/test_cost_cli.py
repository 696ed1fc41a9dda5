"""Prices in the config reach the user: the end summary, the run's dataset card, and `--dry-run`."""

from __future__ import annotations


def test_prices_price_the_summary_the_card_and_the_dry_run(tmp_path, run_cli, write_jsonl):
    personas = write_jsonl(
        "p.jsonl", [{"persona": f"A retired sailor number {i} who paints the sea."} for i in range(4)]
    )
    config = tmp_path / "c.yaml"
    config.write_text('prices:\n  "fake:embedded": {input: 1.0, output: 2.0}\n', encoding="utf-8")
    args = ("profiles", "--personas", personas, "--out", tmp_path / "r", "--backend", "fake", "--config", config, "-q")

    code, _, err = run_cli(*args, "--dry-run")
    assert code == 0 and "at most US$" in err and "fake:embedded" in err
    assert not (tmp_path / "r").exists()  # a dry run writes nothing

    code, _, err = run_cli(*args)
    assert code == 0, err
    line = next(line for line in err.splitlines() if line.startswith("cost of this command"))
    card = (tmp_path / "r" / "README.md").read_text(encoding="utf-8")
    total = next(row for row in card.splitlines() if row.startswith("| **total**"))
    spent = float(total.rstrip(" |").rsplit("|", 1)[1])
    assert spent > 0 and f"US$ {spent:.4f}" in line

    # A later command without --config keeps the run's recorded prices on the card.
    code, _, err = run_cli("profiles", "--personas", personas, "--out", tmp_path / "r", "--backend", "fake", "-q")
    assert code == 0 and "## Cost" in (tmp_path / "r" / "README.md").read_text(encoding="utf-8")
