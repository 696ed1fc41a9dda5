"""The evaluation report: Markdown, a self-contained HTML page, and a radar chart of the five tasks."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from opencharacter.eval.tasks import TASKS
from opencharacter.fileio import atomic_open


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def radar_chart(scores: dict[str, dict[str, float]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [t.name for t in TASKS]
    values = [scores[n]["mean"] if _number(scores[n]["mean"]) else 0.0 for n in names]
    angles = [2 * math.pi * i / len(names) for i in range(len(names))]
    figure = plt.figure(figsize=(5.5, 5.5), dpi=100)
    axis = figure.add_subplot(polar=True)
    axis.plot([*angles, angles[0]], [*values, values[0]], marker="o")
    axis.fill([*angles, angles[0]], [*values, values[0]], alpha=0.25)
    axis.set_xticks(angles, [n.replace(" ", "\n") for n in names])
    axis.set_ylim(0, 5)
    axis.set_yticks([1, 2, 3, 4, 5])
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _score_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, stats in summary["scores"].items():
        mean = f"{stats['mean']:.2f}" if _number(stats["mean"]) else "n/a"
        rows.append((name, mean, f"{stats['std']:.2f}", str(stats["personas"])))
    return rows


def _fidelity_line(fidelity: dict[str, float]) -> str:
    if not fidelity.get("answers"):
        return "Character fidelity: not measured (needs at least two characters)."
    return (
        f"Character fidelity ({fidelity['answers']} answers, {fidelity['candidates']} candidate profiles): "
        f"top-1 {fidelity['top1']:.2f} (chance {fidelity['chance_top1']:.2f}), "
        f"MRR {fidelity['mrr']:.2f} (chance {fidelity['chance_mrr']:.2f})"
    )


def write_reports(out: Path, summary: dict[str, Any], worst: list[dict[str, Any]]) -> dict[str, Path]:
    radar = radar_chart(summary["scores"], out / "radar.png", f"PersonaGym tasks · {summary['model']}")
    rows = _score_rows(summary)
    markdown = [
        f"# Role-play evaluation: {summary['model']}",
        "",
        f"Judges: {', '.join(summary['judges'])} · system prompt: `{summary['system_prompt']}` · "
        f"{summary['personas']} personas · {summary['verdicts']} verdicts, "
        f"{summary['excluded_verdicts']} excluded (unparsable after retries)",
        "",
        "| task | mean | std over personas | personas |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
        _fidelity_line(summary["fidelity"]),
        "",
        "![radar](radar.png)",
        "",
        "## Lowest-scored answers",
        "",
    ]
    for item in worst:
        markdown += [
            f"**{item['task']}** — score {item['score']:.1f} — persona: {item['persona']}",
            "",
            f"> Q: {item['question']}",
            ">",
            f"> A: {item['answer']}",
            "",
        ]
    paths = {"markdown": out / "report.md", "html": out / "report.html", "radar": radar}
    with atomic_open(paths["markdown"]) as stream:
        stream.write("\n".join(markdown))
    image = base64.b64encode(radar.read_bytes()).decode("ascii")
    escape = html.escape
    table = "".join(f"<tr><td>{escape(a)}</td><td>{b}</td><td>{c}</td><td>{d}</td></tr>" for a, b, c, d in rows)
    worst_html = "".join(
        f"<div class='w'><b>{escape(i['task'])}</b> — {i['score']:.1f} — {escape(i['persona'])}"
        f"<p><i>Q:</i> {escape(i['question'])}</p><p><i>A:</i> {escape(i['answer'])}</p></div>"
        for i in worst
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Evaluation: {escape(summary["model"])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:860px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}.w{{border-left:3px solid #c44;padding-left:10px;margin:1em 0}}</style>
</head><body><h1>Role-play evaluation: {escape(summary["model"])}</h1>
<p>Judges: {escape(", ".join(summary["judges"]))} · system prompt: <code>{escape(summary["system_prompt"])}</code> ·
{summary["personas"]} personas · {summary["verdicts"]} verdicts, {summary["excluded_verdicts"]} excluded</p>
<table><tr><th>task</th><th>mean</th><th>std</th><th>personas</th></tr>{table}</table>
<p>{escape(_fidelity_line(summary["fidelity"]))}</p>
<img alt="radar chart" src="data:image/png;base64,{image}">
<h2>Lowest-scored answers</h2>{worst_html}</body></html>"""
    with atomic_open(paths["html"]) as stream:
        stream.write(page)
    return paths
