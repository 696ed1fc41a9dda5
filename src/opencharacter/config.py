"""Every configurable default, in one place.

Each field's `description` is the documentation: CLI help and the README table come from it.
Precedence: these defaults < a YAML `--config` file < command-line flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from opencharacter.errors import ConfigError, InputError
from opencharacter.records import Sampling, Strategy


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackendConfig(Config):
    backend: str = Field("transformers", description="Model backend: transformers, openai, vllm (or fake).")
    model: str = Field(
        "embedded",
        description="Hub id, local directory, or 'embedded' (the bundled SmolLM2-135M-Instruct).",
    )
    base_url: str | list[str] | None = Field(
        None,
        description=(
            "OpenAI-compatible server URL, e.g. http://localhost:8000/v1; a list (or comma-separated) is a fleet: "
            "each call goes to the least-loaded endpoint."
        ),
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Name of the environment variable holding the API key (never the key)."
    )
    concurrency: int = Field(64, ge=1, le=4096, description="Requests in flight at once.")
    timeout: float = Field(300.0, gt=0, description="Per-request timeout in seconds (openai backend).")
    max_retries: int = Field(6, ge=0, le=50, description="Retries of a failed call (5xx, timeouts, bad bodies).")
    requests_per_minute: int | None = Field(
        None, ge=1, description="openai backend: cap on requests sent per minute (hosted APIs; None: no cap)."
    )
    tokens_per_minute: int | None = Field(
        None,
        ge=1,
        description="openai backend: cap on tokens per minute, counted as the API does (prompt + max_tokens).",
    )
    adaptive_concurrency: bool = Field(
        True,
        description="openai backend: lower the requests in flight on 429/503 and rising latency, grow back on "
        "success (AIMD), never above `concurrency`.",
    )
    rate_limit_wait: float = Field(
        900.0,
        gt=0,
        description="openai backend: how long one call may keep waiting out 429/503 answers before it counts "
        "as a failed try.",
    )
    hedging: bool = Field(
        True,
        description="openai backend: send a second copy of a call far slower than its peers (first answer wins).",
    )
    batch_size: int = Field(16, ge=1, le=1024, description="Local backends: sequences generated together.")
    device: str = Field("auto", description="Local backends: auto, cpu, cuda, cuda:1, mps.")
    seed: int = Field(0, description="Seed for local sampling.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Extra backend-specific keyword arguments (e.g. vLLM engine args)."
    )

    @field_validator("base_url", mode="before")
    @classmethod
    def _fleet(cls, value: Any) -> Any:
        """`a,b` and `[a, b]` both mean a fleet; one URL stays a string, as before."""
        if isinstance(value, str):
            value = [part for part in (p.strip() for p in value.split(",")) if part]
        if isinstance(value, list):
            urls = [str(url).strip().rstrip("/") for url in value if str(url).strip()]
            if not urls:
                return None
            for url in urls:
                if not url.startswith(("http://", "https://")):
                    raise ValueError(f"base_url {url!r} must start with http:// or https://")
            if len(set(urls)) != len(urls):
                raise ValueError("base_url lists the same server twice")
            return urls[0] if len(urls) == 1 else urls
        return value

    @field_validator("backend")
    @classmethod
    def _known(cls, value: str) -> str:
        from opencharacter.backends import available_backends

        if value not in available_backends():
            raise ValueError(f"unknown backend {value!r}; choose one of {', '.join(available_backends())}")
        return value


class ExecutorConfig(Config):
    """Where stage work runs. Every executor writes the same run directory and files."""

    kind: Literal["local", "ray"] = Field(
        "local", description="local: asyncio in this process; ray: tasks on a Ray cluster (pip extra `ray`)."
    )
    address: str | None = Field(
        None, description="Ray: cluster address (default: RAY_ADDRESS, else a local Ray started for the run)."
    )
    workers: int | None = Field(None, ge=1, description="Ray: parallel tasks, one engine each (default: CPUs).")
    gpus_per_worker: float = Field(
        0.0, ge=0, description="Ray: GPUs each worker reserves (1 for a local model per GPU; 0 for an HTTP backend)."
    )


class ProfilesConfig(Config):
    sampling: Sampling = Field(
        default_factory=lambda: Sampling(temperature=0.7, max_tokens=400),
        description="Sampling for profiles.",
    )
    max_attempts: int = Field(3, ge=1, le=20, description="Tries per persona before it is recorded as failed.")
    prompt_version: int | None = Field(None, description="Profile prompt version (default: newest).")


class SelectionConfig(Config):
    """How the kept answer is chosen among `synthesis.candidates` (character-aware rejection sampling)."""

    distractors: int = Field(
        15, ge=1, le=1023, description="Other characters (sampled, seeded) each candidate's profile is ranked among."
    )
    drop_below_chance: bool = Field(
        False, description="Drop pairs whose best candidate ranks its own character no better than chance."
    )


class SynthesisConfig(Config):
    per_instruction: int = Field(3, ge=1, description="Distinct characters paired with each instruction (paper: 3).")
    seed: int = Field(0, description="Seed of the instruction-character pairing.")
    sampling: Sampling = Field(
        default_factory=lambda: Sampling(temperature=0.7, max_tokens=512),
        description="Sampling for answers; max_tokens is per answer.",
    )
    max_attempts: int = Field(3, ge=1, le=20, description="Tries per dialogue before it is recorded as failed.")
    generate_prompt_version: int | None = Field(None, description="Generate prompt version (default: newest).")
    rewrite_prompt_version: int | None = Field(None, description="Rewrite prompt version (default: newest).")
    system_prompt_version: int | None = Field(
        None, description="Training system-prompt version (default: newest); train and eval reuse it."
    )
    candidates: int = Field(
        1,
        ge=1,
        le=32,
        description="Answers made per (instruction, character); the one whose answer best identifies its own "
        "character is kept, all are scored in candidates.jsonl (1: no selection).",
    )
    selection: SelectionConfig = Field(default_factory=SelectionConfig, description="Used when candidates > 1.")


class TrainConfig(Config):
    model: str = Field("embedded", description="Base model: hub id, local directory, or 'embedded'.")
    method: Literal["lora", "full", "dpo"] = Field(
        "lora",
        description="SFT with LoRA adapters (peft), full SFT, or DPO with LoRA on preferences.jsonl "
        "(best vs worst candidate).",
    )
    dpo_beta: float = Field(0.1, gt=0, description="DPO: strength of the pull towards the reference model.")
    init_adapter: str | None = Field(
        None,
        description="Start from this trained adapter (a `train --out` directory), e.g. DPO after SFT; "
        "it is also the DPO reference model.",
    )
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Modules that get adapters: 'all-linear' or a list such as [q_proj, v_proj]."
    )
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (LoRA; use ~1e-5 for full).")
    epochs: float = Field(1.0, gt=0, description="Passes over the training dialogues.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    batch_size: int = Field(8, ge=1, description="Dialogues per device per step.")
    gradient_accumulation: int = Field(1, ge=1, description="Steps accumulated per optimizer update.")
    max_length: int = Field(1024, ge=16, description="Tokens per dialogue; longer ones are truncated and counted.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Fraction of steps with linear warm-up.")
    scheduler: str = Field("cosine", description="Learning-rate schedule (any transformers scheduler name).")
    packing: bool = Field(False, description="Pack several dialogues into one sequence (TRL BFD packing).")
    seed: int = Field(0, description="Seed for the character split, shuffling and initialisation.")
    validation_characters: float = Field(
        0.1, ge=0, lt=1, description="Fraction of *characters* held out; their dialogues give the validation loss."
    )
    eval_steps: int = Field(10, ge=1, description="Validation-loss interval in optimizer steps.")
    save_steps: int = Field(50, ge=1, description="Checkpoint interval in optimizer steps.")
    logging_steps: int = Field(1, ge=1, description="Training-loss logging interval.")
    merge: bool = Field(False, description="Also write the LoRA weights merged into the base model (merged/).")
    gradient_checkpointing: bool | None = Field(
        None,
        description="Trade compute for memory (recompute activations in the backward pass); default: on with CUDA, "
        "and on CPU when a micro-batch holds 512 tokens or more.",
    )
    chunked_loss: bool | None = Field(
        None,
        description="Score answer tokens in small chunks instead of materialising full-vocabulary logits; "
        "default: on CPU (on GPUs TRL's fused LM head does the same).",
    )
    micro_batch_tokens: int | None = Field(
        1024,
        ge=16,
        description="CPU: at most this many tokens (micro-batch × max_length) per forward pass; the batch is split "
        "and gradients accumulated, so the effective batch and the loss stay the same. None: no split.",
    )
    strategies: list[Literal["generate", "rewrite"]] | None = Field(
        None, description="Train only on these strategies (default: all dialogues)."
    )


class EvalConfig(Config):
    questions_per_task: int = Field(2, ge=1, le=20, description="Generated questions per task and persona.")
    light: bool = Field(False, description="PersonaGym-Light: one question per task per persona.")
    system_prompt: Literal["ours", "bare"] = Field(
        "ours", description="'ours': the training template (persona + profile); 'bare': 'adopt the identity of …'."
    )
    answer_sampling: Sampling = Field(
        default_factory=lambda: Sampling(temperature=0.7, max_tokens=256), description="Model under test."
    )
    judge_sampling: Sampling = Field(
        default_factory=lambda: Sampling(temperature=0.0, max_tokens=384), description="Judges (greedy)."
    )
    generation_sampling: Sampling = Field(
        default_factory=lambda: Sampling(temperature=0.7, max_tokens=512),
        description="Question and score-example generation (done by the first judge).",
    )
    max_attempts: int = Field(3, ge=1, le=20, description="Tries for unparsable verdicts and generations.")
    fidelity: bool = Field(True, description="Also measure judge-free character fidelity (needs ≥ 2 characters).")
    fidelity_questions: int = Field(3, ge=1, le=5, description="Shared questions every character answers.")
    worst: int = Field(5, ge=0, description="Lowest-scored answers shown in the report.")


class FiltersConfig(Config):
    near_duplicate_profiles: float | None = Field(
        0.95,
        gt=0,
        le=1,
        description="Drop characters whose MiniLM profile embedding has cosine ≥ this with an earlier kept one.",
    )
    near_duplicate_method: Literal["lsh", "exact"] = Field(
        "lsh",
        description="lsh: compare only profiles sharing `near_duplicate_candidates` of their words (MinHash LSH, "
        "needs the `filters` extra); exact: embed and compare every pair.",
    )
    near_duplicate_candidates: float = Field(
        0.7, gt=0, le=1, description="lsh: word-set Jaccard a pair needs before its cosine is computed."
    )
    template_leftovers: bool = Field(True, description="Drop answers with placeholders: {RESPONSE_2}, {{ x }}, {…}.")
    non_language: bool = Field(True, description="Drop letter soup: long unbroken runs, few word-like words.")
    copy_original: float | None = Field(
        0.8,
        gt=0,
        le=1,
        description="Drop rewrites with at least this share of word 3-grams copied from the original answer "
        "(code excluded; None: off).",
    )
    break_character: bool = Field(True, description="Drop dialogues with 'As an AI…', refusals and the like.")
    copy_profile_span: int | None = Field(
        10, ge=3, description="Drop answers repeating this many consecutive words of the profile (None: off)."
    )
    min_answer_chars: int = Field(20, ge=0, description="Drop dialogues with an answer shorter than this.")
    max_answer_chars: int = Field(6000, ge=1, description="Drop dialogues with an answer longer than this.")
    drop_truncated: bool = Field(True, description="Drop empty answers and answers cut at max_tokens.")


class PersonaSource(Config):
    path: str = Field(description="File (jsonl/json/txt), saved datasets directory, or hub dataset id.")
    format: Literal["auto", "persona", "personahub", "text", "dataset", "cards"] = "auto"
    column: str | None = Field(None, description="Column holding the persona text.")
    limit: int | None = Field(None, ge=1, description="Read at most this many personas.")


class InstructionSource(Config):
    path: str = Field(description="Instruction file: Alpaca, LIMA, Persona Hub, ShareGPT or messages.")
    format: Literal["auto", "alpaca", "lima", "personahub", "sharegpt", "messages"] = "auto"
    strategies: list[Strategy] = Field(default_factory=lambda: ["generate"], description="rewrite and/or generate.")
    limit: int | None = Field(None, ge=1, description="Read at most this many instructions.")
    name: str | None = Field(None, description="Label in the `source` field (default: the file stem).")


class ModelPrice(Config):
    """What one model costs, in US$ per million tokens (a provider's list price)."""

    input: float = Field(ge=0, description="US$ per million prompt (input) tokens.")
    output: float = Field(ge=0, description="US$ per million completion (output) tokens.")


class PipelineConfig(Config):
    """The whole pipeline, as one YAML file for `opencharacter run`."""

    run: str = Field("runs/run", description="Run directory: store, outputs and dataset card.")
    backend: BackendConfig = Field(default_factory=BackendConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="Where stage work runs.")
    personas: PersonaSource
    instructions: list[InstructionSource] = Field(default_factory=list)
    profiles: ProfilesConfig = Field(default_factory=ProfilesConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    export: list[Literal["sharegpt", "alpaca", "messages", "parquet"]] = Field(
        default_factory=list, description="Export formats written after synthesis."
    )
    skip_invalid: bool = Field(False, description="Skip malformed input records (and report them).")
    filters: FiltersConfig | None = Field(None, description="Data filters applied after synthesis (RUN/filtered/).")
    train: TrainConfig | None = Field(None, description="Training settings (`opencharacter train --config`).")
    eval: EvalConfig | None = Field(None, description="Evaluation settings (`opencharacter eval --config`).")
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="US$ per million tokens by model name, e.g. {gpt-4o-mini: {input: 0.15, output: 0.6}}: "
        "adds cost to the summary, the dataset card and --dry-run estimates.",
    )


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping, with parse errors reported as file:line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), None, "config file not found") from None
    except UnicodeDecodeError:
        raise InputError(str(path), None, "config file is not valid UTF-8") from None
    except IsADirectoryError:
        raise InputError(str(path), None, "is a directory, expected a YAML file") from None
    except PermissionError:
        raise InputError(str(path), None, "permission denied: cannot read the config file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InputError(str(path), line, f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(str(path), 1, "config must be a YAML mapping")
    return data


def check_top_level(data: dict[str, Any], source: str, model: type[Config] | None = None) -> dict[str, Any]:
    """Reject unknown top-level keys (and non-mapping sections) of a `--config` YAML.

    Commands read only their own section of the pipeline YAML, so a typo'd key (`profile:` for
    `profiles:`) used to be ignored silently there while `run` rejected it; now every command says
    so, with `run`'s words. Sections are fully validated by the command that uses them.
    """
    model = model or PipelineConfig
    unknown = [key for key in data if key not in model.model_fields]
    problems = [f"{source}: {key}: Extra inputs are not permitted" for key in unknown]
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None or value is None or isinstance(value, dict):
            continue
        annotation = field.annotation
        sections = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        if any(issubclass(a, BaseModel) for a in sections):
            problems.append(f"{source}: {key}: must be a mapping of settings, got {type(value).__name__}")
    if problems:
        known = f" (top-level keys: {', '.join(model.model_fields)})" if unknown else ""
        raise ConfigError("; ".join(problems) + known)
    return data


def validation_message(exc: ValidationError, source: str) -> str:
    """One readable line per wrong field: `source: field.path: message`."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"{source}: {where}: {str(error['msg']).removeprefix('Value error, ')}")
    return "; ".join(lines)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: nested mappings combine, everything else in `override` wins."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def build(model: type[Config], data: dict[str, Any], source: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, source)) from None


def reference_markdown() -> str:
    """The configuration reference in the README, generated from the field descriptions above."""
    sections = [
        ("backend", BackendConfig),
        ("executor", ExecutorConfig),
        ("profiles", ProfilesConfig),
        ("synthesis", SynthesisConfig),
        ("filters", FiltersConfig),
        ("train", TrainConfig),
        ("eval", EvalConfig),
        ("sampling (inside profiles / synthesis)", Sampling),
        ("personas", PersonaSource),
        ("instructions[]", InstructionSource),
        ("top level", PipelineConfig),
        ("recipe (top level of a recipe YAML)", RecipeConfig),
    ]
    lines = []
    for title, model in sections:
        lines += [f"**{title}**", "", "| key | default | meaning |", "|---|---|---|"]
        for name, field in model.model_fields.items():
            if isinstance(field.default, (str, int, float, bool)) or field.default is None:
                default = "required" if field.is_required() else f"`{field.default!r}`"
            elif field.default_factory is not None:
                made = field.default_factory()  # type: ignore[call-arg]
                if isinstance(made, BaseModel):
                    changed = made.model_dump(exclude_defaults=True)
                    default = ", ".join(f"`{k}={v!r}`" for k, v in changed.items()) or "its section's defaults"
                else:
                    default = f"`{made!r}`"
            else:
                default = "required"
            lines.append(f"| `{name}` | {default} | {field.description or ''} |")
        lines.append("")
    return "\n".join(lines)


class RecipeConfig(Config):
    """`opencharacter recipe`: the paper's experiment, end to end, on held-out characters."""

    out: str = Field("runs/recipe", description="Directory for data, models, evaluations and the results table.")
    seed: int = Field(0, description="Seed of the persona split, pairing and training.")
    held_out: float = Field(0.25, gt=0, lt=1, description="Fraction of personas held out of all training data.")
    personas: PersonaSource
    instructions: list[InstructionSource] = Field(min_length=1)
    strategies: list[Strategy] = Field(
        default_factory=lambda: ["generate", "rewrite"], description="One tuned student per strategy (G, R)."
    )
    teacher: BackendConfig = Field(default_factory=BackendConfig, description="Model that writes the data.")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="Where the teacher's work runs.")
    judges: list[BackendConfig] = Field(
        default_factory=lambda: [BackendConfig()], description="Judges for PersonaGym-style scoring."
    )
    profiles: ProfilesConfig = Field(default_factory=ProfilesConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    filters: FiltersConfig = Field(default_factory=FiltersConfig)
    train: TrainConfig = Field(default_factory=TrainConfig, description="Student training; `model` is the student.")
    dpo: TrainConfig | None = Field(
        None,
        description="A further student: the SFT student of `dpo_from`, then DPO on its best-vs-worst candidate pairs "
        "(needs synthesis.candidates > 1); `model`, `method` and `init_adapter` are set by the recipe.",
    )
    dpo_from: Strategy = Field("generate", description="Which SFT student the DPO student starts from.")
    eval: EvalConfig = Field(default_factory=lambda: EvalConfig(light=True))
    student_backend: BackendConfig = Field(
        default_factory=BackendConfig, description="How the student answers in evaluation (model is filled in)."
    )
