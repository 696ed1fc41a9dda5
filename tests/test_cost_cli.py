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


def test_the_dry_run_prices_with_the_one_estimator_from_the_runs_own_completions(tmp_path, run_cli, write_jsonl):
    """Before any call: every call at max_tokens ("at most"); once the run has calls of that prompt,
    their average completion length ("about"), far below the cap for the fake backend's short JSON."""
    rows = [{"persona": f"A lighthouse keeper number {i} who collects shells."} for i in range(6)]
    config = tmp_path / "c.yaml"
    config.write_text('prices:\n  "fake:embedded": {input: 1000.0, output: 2000.0}\n', encoding="utf-8")
    base = ("profiles", "--out", tmp_path / "r", "--backend", "fake", "--config", config, "-q")
    first = write_jsonl("first.jsonl", rows[:3])
    code, _, err = run_cli(*base, "--personas", first, "--dry-run")
    upper = float(err.split("at most US$ ")[1].split()[0])
    assert code == 0 and upper > 0
    assert run_cli(*base, "--personas", first)[0] == 0
    code, _, err = run_cli(*base, "--personas", write_jsonl("all.jsonl", rows), "--dry-run")
    assert code == 0 and "completions as long as this run's so far" in err
    assert 0 < float(err.split("about US$ ")[1].split()[0]) < upper  # 3 personas left, short answers
    other = tmp_path / "other.yaml"
    other.write_text("prices:\n  gpt-4o-mini: {input: 0.15, output: 0.6}\n", encoding="utf-8")
    code, _, err = run_cli(*base[:-3], "--config", other, "-q", "--personas", first, "--dry-run")
    assert code == 0 and "no price for fake:embedded" in err
