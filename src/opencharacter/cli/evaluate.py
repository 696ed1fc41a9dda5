"""`opencharacter eval`: PersonaGym-style judging and character fidelity; `eval compare` for two runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from opencharacter.cli import options as opt
from opencharacter.cli.report import console
from opencharacter.config import BackendConfig, EvalConfig, build
from opencharacter.errors import BackendError, ConfigError
from opencharacter.models.paths import check_model_spec

app = typer.Typer(help="Evaluate role-play; `eval compare A B` compares two evaluations.", no_args_is_help=False)


@app.callback(invoke_without_command=True)
def evaluate_command(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", help="Evaluation directory (created if missing).")] = None,
    benchmark: Annotated[Path | None, typer.Option("--benchmark", help="PersonaGym static benchmark folder.")] = None,
    personas: Annotated[Path | None, typer.Option("--personas", help="Persona file: questions are generated.")] = None,
    run: Annotated[Path | None, typer.Option("--run", help="A run: evaluate its characters (with profiles).")] = None,
    held_out_of: Annotated[
        Path | None, typer.Option("--held-out-of", help="With --run: only characters this trained model never saw.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many personas.")] = None,
    light: Annotated[
        bool, typer.Option("--light", help="One question per task per persona.", metavar=opt.FLAG)
    ] = False,
    reuse_from: Annotated[
        Path | None,
        typer.Option("--reuse-from", help="Reuse another evaluation's questions and score examples (fair A/B)."),
    ] = None,
    system_prompt: Annotated[
        str | None, typer.Option("--system-prompt", help="ours (default), bare, or student (personagym protocol).")
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option("--protocol", help="opencharacter (our rubrics, default) or personagym (the checkout's)."),
    ] = None,
    personagym: Annotated[
        Path | None, typer.Option("--personagym", help="A PersonaGym checkout (the personagym protocol reads it).")
    ] = None,
    judge: Annotated[
        list[str] | None,
        typer.Option(
            "--judge",
            help="Judge model, or model=M,backend=B,base_url=U,api_key_env=V for its own server; repeat to average.",
        ),
    ] = None,
    example_model: Annotated[
        str | None, typer.Option("--example-model", help="Writes the score examples (as --judge; default: 1st judge).")
    ] = None,
    judge_backend: Annotated[str | None, typer.Option("--judge-backend", help="Backend of the judges.")] = None,
    judge_base_url: Annotated[str | None, typer.Option("--judge-base-url", help="Judges' server URL.")] = None,
    judge_api_key_env: Annotated[str | None, typer.Option("--judge-api-key-env", help="Judges' key variable.")] = None,
    backend: opt.Backend = None,
    model: opt.Model = None,
    base_url: opt.BaseUrl = None,
    api_key_env: opt.ApiKeyEnv = None,
    concurrency: opt.Concurrency = None,
    batch_size: opt.BatchSize = None,
    config: opt.ConfigFile = None,
    quiet: opt.Quiet = False,
) -> None:
    """Evaluate a model's role-play: five PersonaGym tasks judged 1–5 (PersonaScore) and character fidelity."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise ConfigError("--out DIR is required (where the evaluation is written)")
    from opencharacter.eval import sources
    from opencharacter.eval.runner import evaluate

    data, source, model_config = opt.load_config(
        config, opt.backend_overrides(backend, model, base_url, api_key_env, concurrency, batch_size)
    )
    section = dict(data.get("eval") or {})
    if protocol is not None:
        section["protocol"] = protocol
    if personagym is not None:
        section["personagym"] = {**(section.get("personagym") or {}), "checkout": str(personagym)}
        section.setdefault("protocol", "personagym")
    if light:
        section["light"] = True
    if system_prompt is not None:
        section["system_prompt"] = system_prompt
    elif section.get("protocol") == "personagym":
        section.setdefault("system_prompt", "bare")  # PersonaGym's persona prompt, unless told otherwise
    eval_config = build(EvalConfig, section, source)
    pgym = eval_config.protocol == "personagym"
    if not pgym and sum(x is not None for x in (benchmark, personas, run)) != 1:
        raise ConfigError("give exactly one of --benchmark DIR, --personas FILE or --run DIR")
    if pgym and any(x is not None for x in (benchmark, personas, run)):
        raise ConfigError("the personagym protocol scores its checkout's benchmark: drop --benchmark/--personas/--run")
    if model_config.backend in ("transformers", "vllm"):
        check_model_spec(model_config.model)
    judge_fields = {
        # A PersonaGym judge is an API model (gpt-4o-2024-08-06); our protocol's default is a local one.
        "backend": judge_backend or ("openai" if judge_base_url or pgym else "transformers"),
        "base_url": judge_base_url,
        "api_key_env": judge_api_key_env or "OPENAI_API_KEY",
    }
    if judge:
        judges = [judge_config(spec, judge_fields, source) for spec in judge]
    elif eval_config.judges:
        judges = list(eval_config.judges)
    else:  # the demo's judge: labelled as unnamed wherever its scores are shown
        judges = [] if pgym else [build(BackendConfig, {**judge_fields, "model": "embedded"}, source)]
    examples = judge_config(example_model, judge_fields, source) if example_model else eval_config.example_model
    if pgym:
        from opencharacter.eval.personagym.runner import evaluate_personagym, report_lines

        summary = evaluate_personagym(out, model_config, judges, eval_config, examples, limit)
        print_personagym(summary, report_lines(summary), out)
        if summary["failures"]:
            raise BackendError(f"{len(summary['failures'])} personas failed (see {out / 'report.md'})")
        return
    questions = None
    if benchmark is not None:
        people, questions = sources.load_benchmark(benchmark)
    elif personas is not None:
        people = sources.load_persona_file(personas)
    else:
        people = sources.load_run_characters(run, held_out_of)  # type: ignore[arg-type]
    people = people[:limit] if limit else people
    if not people:
        raise ConfigError("no personas to evaluate")
    result = evaluate(
        out, people, questions, model_config, judges, eval_config, show_progress=not quiet, reuse_from=reuse_from
    )
    from opencharacter.eval.report import refresh_reports

    refresh_reports(
        result.out,
        model_config.model,
        {p.persona_id: p.persona for p in people},
        baseline_dir=reuse_from,
        held_out=held_out_persona_ids(model_config.model, run),
        worst_count=eval_config.worst,
    )
    result.summary = json.loads((result.out / "summary.json").read_text(encoding="utf-8"))
    print_scores(result.summary)
    console.print(f"report: {result.report}  (and report.md, radar.png, summary.json, *.jsonl in {result.out})")


def judge_config(spec: str, shared: dict, source: str) -> BackendConfig:
    """`--judge NAME` (the shared --judge-* flags apply) or `--judge model=M,backend=B,base_url=U,…`."""
    if "=" not in spec:
        return build(BackendConfig, {**shared, "model": spec}, source)
    fields = dict(shared)
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--judge {spec!r}: expected key=value pairs separated by commas")
        fields[key.strip()] = value.strip()
    if "base_url" in fields and "backend" not in spec:
        fields["backend"] = "openai"
    return build(BackendConfig, fields, f"--judge {spec}")


def print_personagym(summary: dict, lines: list[str], out: Path) -> None:
    from opencharacter.eval.personagym.runner import protocol_label

    judges = ", ".join(j["model"] for j in summary["judges"])
    console.print(f"{summary['model']} · {protocol_label(summary)} · judges: {judges}")
    for line in lines:
        typer.echo(line)
    console.print(f"report: {out / 'report.md'}  (and summary.json, answers/examples/verdicts.jsonl in {out})")


def held_out_persona_ids(model: str, run: Path | None) -> set[str] | None:
    """Persona ids of the characters a trained model never saw, when its split and run are at hand."""
    from opencharacter.eval.sources import persona_id
    from opencharacter.models.loading import model_meta

    split = Path(model) / "split.json"
    if not split.is_file():
        return None
    data = run or Path(str(model_meta(model).get("data", "")))
    characters = data / "characters.jsonl"
    if not characters.is_file():
        return None
    held = set(json.loads(split.read_text(encoding="utf-8"))["validation_characters"])
    rows = [json.loads(line) for line in characters.read_text(encoding="utf-8").splitlines() if line]
    return {persona_id(r["persona"]) for r in rows if r["character_id"] in held}


def _label(summary: dict) -> str:
    return str(summary.get("label") or summary["model"])


FIDELITY_KEYS = (
    ("fidelity (embedding)", "fidelity"),
    ("fidelity (lexical)", "fidelity_lexical"),
    ("fidelity (embedding, copy-masked)", "fidelity_masked"),
    ("fidelity (lexical, copy-masked)", "fidelity_lexical_masked"),
)


def print_scores(summary: dict) -> None:
    from opencharacter.eval.report import protocol_label

    title = f"{_label(summary)} · judges: {', '.join(summary['judges'])} · {protocol_label(summary)}"
    table = Table(title=title, title_justify="left")
    for column in ("task", "mean", "std", "personas"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for name, stats in summary["scores"].items():
        mean = stats["mean"]
        shown = "n/a" if mean is None or (isinstance(mean, float) and math.isnan(mean)) else f"{mean:.2f}"
        table.add_row(name, shown, f"{stats['std']:.2f}", str(stats["personas"]))
    console.print(table)
    for name, key in FIDELITY_KEYS:
        fidelity = summary.get(key) or {}
        if fidelity.get("answers"):
            console.print(
                f"{name}: top-1 {fidelity['top1']:.2f} (chance {fidelity['chance_top1']:.2f}), "
                f"MRR {fidelity['mrr']:.2f} (chance {fidelity['chance_mrr']:.2f}) over {fidelity['answers']} answers"
            )
    if summary["fidelity"].get("answers"):
        from opencharacter.eval.report import copy_line

        console.print(copy_line(summary))
        console.print("(candidate selection optimises the embedding fidelity; the lexical one is independent of it;")
        console.print(" copy-masked: ranked on the answers without the spans copied from their own profile)")
    console.print(f"verdicts: {summary['verdicts']}, excluded: {summary['excluded_verdicts']}")


@app.command("compare")
def compare_command(
    first: Annotated[Path, typer.Argument(help="Baseline evaluation directory.")],
    second: Annotated[Path, typer.Argument(help="Evaluation to compare against it.")],
    samples: Annotated[int, typer.Option("--samples", help="Bootstrap resamples.")] = 2000,
) -> None:
    """Per-task scores and fidelity side by side, with deltas and 95% bootstrap intervals over personas.

    The table goes to stderr; stdout gets the deltas as one JSON line, for scripts."""
    from opencharacter.eval.fidelity import copy_by_character, reciprocal_ranks
    from opencharacter.eval.scores import bootstrap_delta

    def load(path: Path) -> dict:
        file = path / "summary.json"
        if not file.is_file():
            raise ConfigError(f"{path} is not an evaluation directory (no summary.json)")
        return json.loads(file.read_text(encoding="utf-8"))

    a, b = load(first), load(second)
    from opencharacter.eval.report import protocol_label

    # Evaluations made before `protocol` was recorded are ours (the only protocol there was).
    protocols = a.get("protocol", "opencharacter"), b.get("protocol", "opencharacter")
    if protocols[0] != protocols[1]:
        raise ConfigError(
            f"{first} is scored by the {protocols[0]} protocol, {second} by the {protocols[1]} protocol: "
            "their numbers are on different scales; compare evaluations of one protocol"
        )
    left, right = _label(a), _label(b)
    if left == right:  # the same model twice (other settings): tell the columns apart by directory
        left, right = f"{left} · {first.name}", f"{right} · {second.name}"
    table = Table(title=f"{left}  →  {right} · {protocol_label(a)}", title_justify="left")
    for column in ("task", left, right, "delta", "95% CI"):
        table.add_column(column, justify="left" if column == "task" else "right")
    rows = []
    for name in a["scores"]:
        before = {p: s[name] for p, s in a["per_persona"].items() if name in s}
        after = {p: s[name] for p, s in b["per_persona"].items() if name in s}
        delta, low, high = bootstrap_delta(before, after, samples)
        fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"  # noqa: E731
        table.add_row(
            name,
            fmt(a["scores"][name]["mean"]),
            fmt(b["scores"][name]["mean"]),
            f"{delta:+.2f}",
            f"[{low:+.2f}, {high:+.2f}]",
        )
        rows.append({"task": name, "delta": delta, "low": low, "high": high})
    # The embedding signal keeps its old names ("fidelity MRR") for scripts that read them.
    signals = (
        ("embedding", "fidelity", "fidelity", "fidelity"),
        ("lexical", "fidelity_lexical", "lexical", "lexical fidelity"),
        ("embedding_masked", "fidelity_masked", "copy-masked", "copy-masked fidelity"),
        ("lexical_masked", "fidelity_lexical_masked", "copy-masked lexical", "copy-masked lexical fidelity"),
    )
    for signal, key, shown, name in signals:
        fa, fb = a.get(key) or {}, b.get(key) or {}
        if not (fa.get("answers") and fb.get("answers")):
            continue
        top1 = f"{fb['top1'] - fa['top1']:+.2f}"
        table.add_row(f"{shown} top-1", f"{fa['top1']:.2f}", f"{fb['top1']:.2f}", top1, "")
        before, after = reciprocal_ranks(first, signal), reciprocal_ranks(second, signal)  # type: ignore[arg-type]
        delta, low, high = bootstrap_delta(before, after, samples)
        interval = f"[{low:+.2f}, {high:+.2f}]"
        table.add_row(f"{shown} MRR", f"{fa['mrr']:.2f}", f"{fb['mrr']:.2f}", f"{delta:+.2f}", interval)
        rows.append({"task": f"{name} MRR", "delta": delta, "low": low, "high": high})
    # How much of the fidelity answers restates their own profile (lower is better), per character.
    ca, cb = a.get("profile_copy") or {}, b.get("profile_copy") or {}
    if ca.get("answers") and cb.get("answers"):
        for field, shown in (("copy_rate", "profile copy rate"), ("opens_with_profile", "opens with profile")):
            before, after = copy_by_character(first, field), copy_by_character(second, field)  # type: ignore[arg-type]
            delta, low, high = bootstrap_delta(before, after, samples)
            interval = f"[{low:+.2f}, {high:+.2f}]"
            table.add_row(shown, f"{ca[field]:.2f}", f"{cb[field]:.2f}", f"{delta:+.2f}", interval)
            rows.append({"task": shown, "delta": delta, "low": low, "high": high})
    console.print(table)
    typer.echo(json.dumps(rows))
