"""`opencharacter demo`: the whole pipeline on bundled samples with the embedded model, no files needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from opencharacter.cli import options as opt
from opencharacter.cli.demo_phases import DemoPhases
from opencharacter.cli.report import ConsoleReporter, console
from opencharacter.config import PipelineConfig
from opencharacter.executors.processes import run_phase
from opencharacter.pipeline import run_pipeline
from opencharacter.sources.bundled import sample_path


def demo_config(run: Path, personas: int, instructions: int, per_instruction: int, backend: dict) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "run": str(run),
            "backend": backend,
            "personas": {"path": str(sample_path("personas.jsonl")), "limit": personas},
            "instructions": [
                {
                    "path": str(sample_path("instructions.jsonl")),
                    "strategies": ["generate", "rewrite"],
                    "limit": instructions,
                    "name": "samples",
                }
            ],
            "profiles": {"sampling": {"temperature": 0.7, "max_tokens": 320}},
            "synthesis": {
                "per_instruction": per_instruction,
                "sampling": {"temperature": 0.7, "max_tokens": 128},
                "max_attempts": 2,
            },
            "export": ["sharegpt", "alpaca", "messages", "parquet"],
        }
    )


def export_demo_cards(run_dir: Path) -> tuple[Path, int]:
    """Character Cards for every profile, so the demo shows every export format."""
    from opencharacter.pipeline import export_run

    return export_run(run_dir, "cards")


def demo_synthesis(config: PipelineConfig, quiet: bool) -> tuple[Path, Path, int]:
    """The pipeline on the samples, then Character Cards: (run directory, cards directory, cards)."""
    run_dir = run_pipeline(config, quiet=quiet, reporter=ConsoleReporter(), fail_on_incomplete=False)
    cards, count = export_demo_cards(run_dir)
    return run_dir, cards, count


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def demo_train(run_dir: Path) -> Path | None:
    """A few minutes of LoRA on the demo dialogues, then one answer from a held-out character."""
    from opencharacter.chat.characters import ChatCharacter
    from opencharacter.chat.session import ChatModel, ChatSession, system_prompt_version_for
    from opencharacter.config import BackendConfig, TrainConfig
    from opencharacter.records import Character, Sampling
    from opencharacter.store import RunStore
    from opencharacter.train.trainer import train

    out = run_dir / "model"
    # One dialogue per pass, checkpointed: the demo shares its process with the generation model, and
    # should fit a laptop (the batch of 4 is made up by accumulation, so training is the same).
    config = TrainConfig(
        epochs=2,
        batch_size=4,
        max_length=384,
        learning_rate=5e-4,
        eval_steps=5,
        save_steps=100,
        micro_batch_tokens=512,
        gradient_checkpointing=True,
    )
    if (out / "opencharacter.json").exists():
        console.print(f"[bold]Training[/]: already done in {out} (delete it to retrain)")
    else:
        result = train(config, run_dir, out, resume=(out / "checkpoints").exists())
        console.print(
            f"  {result.steps} steps, training loss {_num(result.final_train_loss)}, validation loss "
            f"(held-out characters) {_num(result.final_validation_loss)}; curves in {out / 'loss.png'}"
        )
    held = json.loads((out / "split.json").read_text(encoding="utf-8"))["validation_characters"]
    store = RunStore(run_dir)
    characters = {c.character_id: c for c in store.records("profiles", Character)}
    store.close()
    chosen = characters.get(held[0]) if held else next(iter(characters.values()), None)
    if chosen is None:
        return out
    session = ChatSession(
        ChatModel(BackendConfig(model=str(out))),
        ChatCharacter(chosen.profile.name, chosen.persona, chosen.character),
        Sampling(temperature=0.0, max_tokens=80),
        system_prompt_version_for(str(out)),
    )
    question = "Tell me a little about yourself."
    answer = "".join(session.reply(question)).strip()
    console.print(f"\n[bold]{chosen.profile.name}[/] ({chosen.persona})\n  you> {question}\n  {answer}")
    return out


def demo_eval(run_dir: Path, model_dir: Path) -> Path:
    """Light PersonaGym-style judging and fidelity of the base and the tuned model, same questions and anchors."""
    from opencharacter.config import BackendConfig, EvalConfig
    from opencharacter.eval.runner import evaluate
    from opencharacter.eval.sources import load_run_characters

    people = load_run_characters(run_dir)
    held = set(json.loads((model_dir / "split.json").read_text(encoding="utf-8"))["validation_characters"])
    # Held-out characters first: they are the ones the tuned model never saw.
    people.sort(key=lambda p: p.persona_id not in {persona_id_of(run_dir, c) for c in held})
    judged = people[:3]
    config = EvalConfig.model_validate(
        {
            "light": True,
            "answer_sampling": {"temperature": 0.0, "max_tokens": 96},
            "judge_sampling": {"temperature": 0.0, "max_tokens": 128},
            "generation_sampling": {"temperature": 0.7, "max_tokens": 256},
            "max_attempts": 3,
            "fidelity_questions": 2,
        }
    )
    judge = [BackendConfig()]
    evals = run_dir / "evals"
    base = evaluate(evals / "base", judged, None, BackendConfig(), judge, config)
    tuned = evaluate(
        evals / "tuned", judged, None, BackendConfig(model=str(model_dir)), judge, config,
        reuse_from=evals / "base",
    )  # fmt: skip
    from opencharacter.eval.report import refresh_reports

    texts = {p.persona_id: p.persona for p in judged}
    held_ids = {persona_id_of(run_dir, c) for c in held}
    for directory, model, baseline in (
        (evals / "base", "embedded", None),
        (evals / "tuned", str(model_dir), evals / "base"),
    ):
        refresh_reports(directory, model, texts, baseline_dir=baseline, held_out=held_ids, worst_count=config.worst)
    for label, result in (("base", base), ("tuned", tuned)):
        scores, fidelity = result.summary["scores"]["PersonaScore"], result.summary["fidelity"]
        console.print(
            f"  {label:<5} PersonaScore {scores['mean']:.2f} · fidelity MRR {fidelity.get('mrr', float('nan')):.2f} "
            f"(chance {fidelity.get('chance_mrr', float('nan')):.2f}) · report {result.report}"
        )
    console.print(f"  compare: opencharacter eval compare {evals / 'base'} {evals / 'tuned'}")
    return tuned.report


def persona_id_of(run_dir: Path, character_id: str) -> str:
    from opencharacter.eval.sources import persona_id
    from opencharacter.store.layout import CHARACTERS

    for line in (run_dir / CHARACTERS).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["character_id"] == character_id:
            return persona_id(record["persona"])
    return ""


def demo(
    run: Annotated[Path, typer.Option("--run", "--out", help="Run directory.")] = Path("runs/demo"),
    personas: Annotated[int, typer.Option("--personas", help="Sample personas to use.")] = 6,
    instructions: Annotated[int, typer.Option("--instructions", help="Sample instructions to use.")] = 6,
    per_instruction: Annotated[int, typer.Option("--per-instruction", help="Characters per instruction.")] = 2,
    backend: opt.Backend = None,
    model: opt.Model = None,
    base_url: opt.BaseUrl = None,
    api_key_env: opt.ApiKeyEnv = None,
    concurrency: opt.Concurrency = None,
    batch_size: opt.BatchSize = None,
    train: Annotated[
        bool, typer.Option("--train/--no-train", help="Fine-tune the embedded model on the result.", metavar=opt.FLAG)
    ] = True,
    evaluate: Annotated[
        bool,
        typer.Option(
            "--eval/--no-eval", help="Evaluate the base and the fine-tuned model (needs --train).", metavar=opt.FLAG
        ),
    ] = True,
    quiet: opt.Quiet = False,
) -> None:
    """Run everything on bundled sample data with the embedded model.

    About 9 minutes on an idle 2-core machine (much longer when other work shares the cores); each phase
    says how long it took last time on this machine, and the end prints the time per phase."""
    backend_config = opt.backend_overrides(backend, model, base_url, api_key_env, concurrency, batch_size)
    config = demo_config(run, personas, instructions, per_instruction, backend_config)
    names = ["synthesis", *(["training"] if train else []), *(["evaluation"] if train and evaluate else [])]
    # Output from an earlier run: that phase resumes, so last time's timing is only an upper bound.
    existing = {"synthesis": run, "training": run / "model", "evaluation": run / "evals"}
    resuming = {name for name in names if existing[name].exists()}
    default_demo = not backend_config and (personas, instructions, per_instruction) == (6, 6, 2)
    phases = DemoPhases.load(names, resuming, estimates=default_demo)
    phases.start("synthesis", f"profiles for {personas} personas, dialogues for {instructions} instructions, exports")
    (run_dir, cards, count), peak = run_phase(demo_synthesis, config, quiet)
    console.print(f"  {count} Character Cards (V2, JSON and PNG) in {cards}")
    phases.done(peak)
    trained = None
    if train:
        phases.start("training", "a LoRA adapter of the embedded model on these dialogues")
        trained, peak = run_phase(demo_train, run_dir)
        phases.done(peak)
    report = None
    if trained and evaluate:
        phases.start("evaluation", "PersonaGym-Light and fidelity, base vs fine-tuned")
        report, peak = run_phase(demo_eval, run_dir, trained)
        phases.done(peak)
    if default_demo:  # only the default demo's timings predict the next default demo
        phases.save()
    console.print(
        "\n[bold]Demo finished.[/] Everything is in "
        f"[cyan]{run_dir}[/]:\n"
        f"  characters.jsonl   profiles made from {personas} sample personas\n"
        "  dialogues.jsonl    in-character dialogues, both strategies (generate = G, rewrite = R)\n"
        "  failures.jsonl     what could not be made, and why\n"
        "  README.md          the dataset card: models, prompts, counts, tokens, wall time\n"
        "  exports/           ShareGPT, Alpaca, messages JSONL, Parquet and Character Cards (cards/)\n"
        + ("  model/             a LoRA adapter of the embedded model trained on these dialogues\n" if trained else "")
        + (f"  evals/             base vs fine-tuned evaluation; report: {report}\n" if report else "")
        + f"{phases.summary()}\n"
        + "The embedded SmolLM2-135M model is for trying the tool: real data needs a strong teacher model,\n"
        "e.g. --backend openai --base-url http://localhost:8000/v1 \\\n"
        "     --model meta-llama/Meta-Llama-3-70B-Instruct"
    )


__all__ = ["demo", "demo_config"]
