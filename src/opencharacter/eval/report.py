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


SELECTION_NOTE = (
    "Candidate selection (synthesis.candidates) optimises the embedding fidelity; "
    "the lexical one (BM25 over the answer's words) is the independent check."
)


def _fidelity_line(fidelity: dict[str, Any], name: str = "Character fidelity") -> str:
    if not fidelity.get("answers"):
        reason = "needs at least two characters" if name == "Character fidelity" else "rerun this evaluation to add it"
        return f"{name}: not measured ({reason})."
    return (
        f"{name} ({fidelity['answers']} answers, {fidelity['candidates']} candidate profiles): "
        f"top-1 {fidelity['top1']:.2f} (chance {fidelity['chance_top1']:.2f}), "
        f"MRR {fidelity['mrr']:.2f} (chance {fidelity['chance_mrr']:.2f})"
    )


def copy_line(summary: dict[str, Any]) -> str:
    """How much of the fidelity answers is their own profile restated (`eval/copying.py`)."""
    copied = summary.get("profile_copy") or {}
    if not copied.get("answers"):
        return "Profile copying: not measured (rerun this evaluation to add it)."
    return (
        f"Profile copying ({copied['answers']} answers): copy rate {copied['copy_rate']:.2f} "
        f"(share of word trigrams found in the answerer's own profile), "
        f"{copied['opens_with_profile']:.0%} open with the character's name or profile"
    )


COPY_NOTE = (
    "Copy-masked: the same ranking on the answers with every span copied from the answerer's own profile "
    "removed, so reciting the profile cannot win it."
)


def fidelity_lines(summary: dict[str, Any]) -> list[str]:
    """Both fidelity signals, each also copy-masked, the copy measures and which signal selection
    optimised (none when fidelity was not measured)."""
    if not summary["fidelity"].get("answers"):
        return [_fidelity_line(summary["fidelity"])]
    return [
        _fidelity_line(summary["fidelity"], "Character fidelity, embedding (MiniLM cosine)"),
        _fidelity_line(summary.get("fidelity_lexical") or {}, "Character fidelity, lexical (BM25)"),
        _fidelity_line(summary.get("fidelity_masked") or {}, "Character fidelity, embedding, copy-masked"),
        _fidelity_line(summary.get("fidelity_lexical_masked") or {}, "Character fidelity, lexical, copy-masked"),
        copy_line(summary),
        SELECTION_NOTE,
        COPY_NOTE,
    ]


def model_label(model: str) -> str:
    """Name a model by what it is: the hub id of the embedded model, a trained directory's name + its base."""
    from opencharacter.models.embedded import EMBEDDED_HUB_ID, EMBEDDED_NAME
    from opencharacter.models.loading import model_meta

    if model == EMBEDDED_NAME:
        return f"{EMBEDDED_HUB_ID} (embedded)"
    path = Path(model)
    if path.is_dir():
        meta = model_meta(model)
        base = meta.get("base_model_id") or meta.get("base_model")
        if base == EMBEDDED_NAME:
            base = EMBEDDED_HUB_ID
        kind = "LoRA" if meta.get("method") == "lora" else "fine-tune"
        return f"{path.resolve().name} ({kind} of {base})" if base else path.resolve().name
    return model


def protocol_label(summary: dict[str, Any]) -> str:
    """Which protocol a number came from, as reports and `eval compare` name it."""
    if summary.get("protocol") == "personagym":
        name = "PersonaGym-Light" if summary.get("light") else "PersonaGym"
        commit = (summary.get("checkout") or {}).get("commit")
        return f"{name} protocol (checkout {commit[:12]})" if commit else f"{name} protocol"
    label = "opencharacter protocol (our rubrics and judge prompt; not comparable with PersonaGym's numbers)"
    if summary.get("demo_judge"):
        label += "; judged by the embedded demo model: no judge named, not a score to report"
    return label


def _title(summary: dict[str, Any]) -> str:
    return str(summary.get("label") or summary["model"])


def _rationales(out: Path) -> dict[tuple[str, str], list[str]]:
    """(question text, task) → the judges' reasons, from the evaluation's own files."""
    import json

    answers, verdicts = out / "answers.jsonl", out / "verdicts.jsonl"
    if not (answers.is_file() and verdicts.is_file()):
        return {}
    question_of = {}
    for line in answers.read_text(encoding="utf-8").splitlines():
        if line:
            row = json.loads(line)
            question_of[row["question_id"]] = row["question"]
    reasons: dict[tuple[str, str], list[str]] = {}
    for line in verdicts.read_text(encoding="utf-8").splitlines():
        if line:
            row = json.loads(line)
            text = (row.get("rationale") or "").strip()
            if text and row["question_id"] in question_of:
                reasons.setdefault((question_of[row["question_id"]], row["task"]), []).append(text)
    return reasons


def _mean(stats: dict[str, Any] | None) -> str:
    return f"{stats['mean']:.2f}" if stats and _number(stats.get("mean")) else "n/a"


def _comparison_rows(summary: dict[str, Any], baseline: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, stats in summary["scores"].items():
        before = baseline["scores"].get(name)
        delta = (
            f"{stats['mean'] - before['mean']:+.2f}"
            if before and _number(before.get("mean")) and _number(stats.get("mean"))
            else ""
        )
        rows.append((name, _mean(before), _mean(stats), delta))
    return rows


def write_reports(
    out: Path,
    summary: dict[str, Any],
    worst: list[dict[str, Any]],
    baseline: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Markdown + HTML + radar. `summary` may carry `label` (what the model is) and `held_out`
    (personas the model never trained on); `baseline` is another evaluation's summary, shown beside."""
    radar = radar_chart(summary["scores"], out / "radar.png", f"PersonaGym tasks · {_title(summary)}")
    rows = _score_rows(summary)
    reasons = _rationales(out)
    for item in worst:
        item.setdefault("reasons", reasons.get((item["question"], item["task"]), []))
    held = summary.get("held_out") or []
    side = _comparison_rows(summary, baseline) if baseline else []
    base_name = _title(baseline) if baseline else ""
    markdown = [
        f"# Role-play evaluation: {_title(summary)}",
        "",
        f"Judges: {', '.join(summary['judges'])} · system prompt: `{summary['system_prompt']}` · "
        f"{summary['personas']} personas · {summary['verdicts']} verdicts, "
        f"{summary['excluded_verdicts']} excluded (unparsable after retries)",
        "",
        f"Protocol: {protocol_label(summary)}",
        "",
        "| task | mean | std over personas | personas |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
        *(f"- {line}" for line in fidelity_lines(summary)),
        "",
        *(
            [
                f"## Against {base_name}",
                "",
                f"| task | {base_name} | {_title(summary)} | delta |",
                "|---|---|---|---|",
                *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in side),
                "",
            ]
            if baseline
            else []
        ),
        *(
            [
                f"Held out of training ({len(held)} of {summary['personas']} personas, never seen by the model):",
                "",
                *(f"- {persona}" for persona in held),
                "",
            ]
            if held
            else []
        ),
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
            *(f"Judge: {reason}" for reason in item["reasons"]),
            *([""] if item["reasons"] else []),
        ]
    paths = {"markdown": out / "report.md", "html": out / "report.html", "radar": radar}
    with atomic_open(paths["markdown"]) as stream:
        stream.write("\n".join(markdown))
    image = base64.b64encode(radar.read_bytes()).decode("ascii")
    escape = html.escape
    table = "".join(f"<tr><td>{escape(a)}</td><td>{b}</td><td>{c}</td><td>{d}</td></tr>" for a, b, c, d in rows)
    worst_html = "".join(
        f"<div class='w'><b>{escape(i['task'])}</b> — {i['score']:.1f} — {escape(i['persona'])}"
        f"<p><i>Q:</i> {escape(i['question'])}</p><p><i>A:</i> {escape(i['answer'])}</p>"
        + "".join(f"<p class='j'><i>Judge:</i> {escape(r)}</p>" for r in i["reasons"])
        + "</div>"
        for i in worst
    )
    side_html = (
        f"<h2>Against {escape(base_name)}</h2><table><tr><th>task</th><th>{escape(base_name)}</th>"
        f"<th>{escape(_title(summary))}</th><th>delta</th></tr>"
        + "".join(f"<tr><td>{escape(a)}</td><td>{b}</td><td>{c}</td><td>{d}</td></tr>" for a, b, c, d in side)
        + "</table>"
        if baseline
        else ""
    )
    held_html = (
        f"<p>Held out of training ({len(held)} of {summary['personas']} personas, never seen by the model):</p><ul>"
        + "".join(f"<li>{escape(p)}</li>" for p in held)
        + "</ul>"
        if held
        else ""
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Evaluation: {escape(_title(summary))}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:860px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}.w{{border-left:3px solid #c44;padding-left:10px;margin:1em 0}}</style>
</head><body><h1>Role-play evaluation: {escape(_title(summary))}</h1>
<p>Judges: {escape(", ".join(summary["judges"]))} · system prompt: <code>{escape(summary["system_prompt"])}</code> ·
{summary["personas"]} personas · {summary["verdicts"]} verdicts, {summary["excluded_verdicts"]} excluded</p>
<p>Protocol: {escape(protocol_label(summary))}</p>
<table><tr><th>task</th><th>mean</th><th>std</th><th>personas</th></tr>{table}</table>
<p>{"<br>".join(escape(line) for line in fidelity_lines(summary))}</p>
{side_html}{held_html}
<img alt="radar chart" src="data:image/png;base64,{image}">
<h2>Lowest-scored answers</h2>{worst_html}</body></html>"""
    with atomic_open(paths["html"]) as stream:
        stream.write(page)
    return paths


def refresh_reports(
    out: Path,
    model: str,
    persona_text: dict[str, str],
    baseline_dir: Path | None = None,
    held_out: set[str] | None = None,
    worst_count: int = 5,
) -> dict[str, Path]:
    """Rewrite an evaluation's summary.json and reports with what the CLI knows beyond the runner:
    the model's name, the baseline beside it, and which personas (ids) were held out of training."""
    import json

    from opencharacter.eval.records import Answer, Verdict
    from opencharacter.eval.scores import question_scores

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    summary["label"] = model_label(model)
    if held_out is not None:
        summary["held_out"] = sorted(persona_text.get(p, p) for p in held_out if p in summary.get("per_persona", {}))
    baseline = None
    if baseline_dir is not None and (baseline_dir / "summary.json").is_file():
        baseline = json.loads((baseline_dir / "summary.json").read_text(encoding="utf-8"))
        summary["baseline"] = {"path": str(baseline_dir), "label": _title(baseline)}
    verdicts = [Verdict.model_validate_json(x) for x in _lines(out / "verdicts.jsonl")]
    answers = {a.question_id: a for a in (Answer.model_validate_json(x) for x in _lines(out / "answers.jsonl"))}
    ranked = sorted(((score, key) for key, score in question_scores(verdicts).items()), key=lambda pair: pair[0])
    worst = [
        {
            "task": task,
            "score": score,
            "persona": persona_text.get(persona, persona),
            "question": answers[qid].question,
            "answer": answers[qid].answer,
        }
        for score, (persona, task, qid) in ranked[:worst_count]
        if qid in answers
    ]
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return write_reports(out, summary, worst, baseline)


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line] if path.is_file() else []
