"""OpenAI Batch API files: export the calls a stage still needs, import the provider's answers.

`export_*` runs the real stage (like a dry run) with a `generate` that answers from the run's call
cache where it can and otherwise records the request, as the openai backend would send it, and
stops that item. `import_results` puts each answer into the call cache under the same key, so
rerunning the stage with the same options completes from the cache without calling anyone.

A generated (G) dialogue needs one round per user turn: turn 2's request holds turn 1's answer,
so it can only be exported once turn 1 has been imported.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from opencharacter.backends import build_backend
from opencharacter.backends.http_payload import build_payload, parse_response
from opencharacter.config import BackendConfig, ProfilesConfig, SynthesisConfig
from opencharacter.engine import Engine
from opencharacter.engine.engine import with_call_seed
from opencharacter.errors import BackendError, ConfigError, InputError, ParseError
from opencharacter.executors import Stage, WorkItem
from opencharacter.records import Character, ChatRequest, Completion, Instruction, Persona, Strategy
from opencharacter.stages import pairing
from opencharacter.stages.dialogues import DialogueStage, applies, dialogue_items
from opencharacter.stages.profiles import ProfileStage, profile_items
from opencharacter.store import RunStore
from opencharacter.store.lock import RunLock
from opencharacter.store.run_store import STORE_FILE

T = TypeVar("T")
BATCH_DIR = "batch"
CHAT_URL = "/v1/chat/completions"
MAX_REQUESTS = 50_000  # OpenAI's per-file limits
MAX_BYTES = 200 * 1024 * 1024


class _Pending(Exception):
    """The item needs a call that is not in the cache yet: its request was recorded."""


@dataclass
class ExportResult:
    stage: str
    items: int = 0
    done: int = 0
    failed_before: int = 0
    pending_items: int = 0
    would_fail: int = 0
    """Items whose cached answers the stage rejects on every attempt (a rerun records them as failed)."""
    ready: int = 0
    """Items the cache already completes: rerunning the stage makes them without new calls."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    index: dict[str, dict[str, str]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    later_turns: int = 0
    """Pending G items with user turns after the exported one: another round follows the import."""


class ExportGenerate:
    """A `generate` that replays cached calls and records the first uncached one per item."""

    def __init__(self, engine: Engine, model: str, result: ExportResult) -> None:
        self.engine, self.model, self.result = engine, model, result
        self.pending: ChatRequest | None = None

    async def __call__(
        self,
        request: ChatRequest,
        parse: Callable[[Completion], T],
        *,
        prompt_id: str,
        max_attempts: int,
        first_attempt: int = 0,
        variant: int = 0,
    ) -> tuple[T, int]:
        last: ParseError | None = None
        for attempt in range(first_attempt, first_attempt + max_attempts):  # as Engine.generate_parsed
            key = self.engine.cache_key(request, prompt_id, attempt, variant)
            cached = self.engine.store.get_call(key)
            if cached is None:
                self.pending = request
                self.record(key, request, prompt_id)
                raise _Pending
            try:
                return parse(cached), attempt - first_attempt + 1
            except ParseError as exc:
                last = exc
        assert last is not None
        raise last

    def record(self, key: str, request: ChatRequest, prompt_id: str) -> None:
        if key in self.result.index:  # two items asking the same call: the cache answers both
            return
        body = build_payload(with_call_seed(request, key), self.model)
        self.result.requests.append({"custom_id": key, "method": "POST", "url": CHAT_URL, "body": body})
        self.result.index[key] = {"prompt_id": prompt_id, "model": self.engine.backend.model_id}


async def _walk(
    store: RunStore, stage: Stage[Any, Any], items: Iterable[WorkItem[Any]], generate: ExportGenerate,
    retry_failed: bool, turns_left: Callable[[WorkItem[Any]], bool],
) -> None:  # fmt: skip
    result = generate.result
    for item in items:
        result.items += 1
        if store.has_record(stage.name, item.id):
            result.done += 1
            continue
        failure = store.get_failure(stage.name, item.id)
        if failure is not None and not retry_failed:
            result.failed_before += 1
            continue
        try:
            await stage(item, generate, failure.attempts if failure else 0)
        except _Pending:
            result.pending_items += 1
            if turns_left(item):
                result.later_turns += 1
            continue
        except ParseError:
            result.would_fail += 1
            continue
        result.ready += 1


class _Exporter:
    """The run's store and an engine on the teacher backend (built only for its cache keys)."""

    def __init__(self, run_dir: Path, backend: BackendConfig, create: bool) -> None:
        if not create and not (run_dir / STORE_FILE).exists():
            raise ConfigError(f"{run_dir} is not a run directory yet: run `opencharacter profiles` first")
        self.run_dir = run_dir
        self.lock = RunLock(run_dir, "batch export").acquire() if run_dir.exists() else None
        self.store = RunStore(run_dir)
        self.backend = build_backend(backend)
        self.engine = Engine(self.backend, self.store)
        teacher = self.store.get_meta("teacher")
        if teacher is not None and teacher != self.backend.model_id:  # what RunSession would refuse on rerun
            self.close()
            raise ConfigError(
                f"{run_dir} holds data made by {teacher}, not {self.backend.model_id}: "
                "export with the run's model, or use a new --out"
            )

    def close(self) -> None:
        asyncio.run(self.backend.aclose())
        self.store.close()
        if self.lock is not None:
            self.lock.release()


def export_profiles(
    run_dir: str | Path, personas: Sequence[Persona], config: ProfilesConfig, backend: BackendConfig,
    retry_failed: bool = False, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES,
) -> ExportResult:  # fmt: skip
    """The profile calls `opencharacter profiles` would still make, as batch files under RUN/batch."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    exporter = _Exporter(run, backend, create=True)
    try:
        stage = ProfileStage(config.sampling, config.max_attempts, exporter.backend.model_id, config.prompt_version)
        result = ExportResult("profiles")
        generate = ExportGenerate(exporter.engine, backend.model, result)
        asyncio.run(_walk(exporter.store, stage, profile_items(personas), generate, retry_failed, lambda _: False))
    finally:
        exporter.close()
    return write_files(run, result, max_requests, max_bytes)


def export_dialogues(
    run_dir: str | Path, sources: Sequence[Sequence[Instruction]], strategy: Strategy, config: SynthesisConfig,
    backend: BackendConfig, retry_failed: bool = False, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES,
) -> ExportResult:  # fmt: skip
    """The dialogue calls `opencharacter synthesize --strategy S` would still make (this round), for
    each instruction file's instructions (`sources`) in the order `synthesize` is given them."""
    run = Path(run_dir)
    exporter = _Exporter(run, backend, create=False)
    try:
        store = exporter.store
        characters = {c.character_id: c for c in store.records("profiles", Character)}
        pool = sorted(characters)
        pairing.check_pool(len(pool), config.per_instruction)
        recorded_meta = store.get_meta("pairing")
        if recorded_meta is not None and recorded_meta["seed"] != config.seed:
            raise ConfigError(f"{run} pairs instructions with seed {recorded_meta['seed']}, not {config.seed}")

        def characters_for(instruction: Instruction) -> list[Character]:
            # The pairing `synthesize` will record: drawn the same way, deterministically.
            recorded = store.get_record(pairing.STAGE, instruction.question_id, pairing.InstructionPairing)
            kept = recorded.character_ids if recorded is not None else []
            ids = pairing.draw(instruction.question_id, pool, config.per_instruction, config.seed, kept)
            return [characters[c] for c in ids]

        paired = (
            (index, instruction, characters_for(instruction))
            for instructions in sources
            for index, instruction in enumerate(instructions)
            if applies(instruction, strategy)
        )
        stage = DialogueStage(config, exporter.backend.model_id)
        result = ExportResult(strategy)
        generate = ExportGenerate(exporter.engine, backend.model, result)

        def turns_left(item: WorkItem[Any]) -> bool:
            # The pending call answers the turn after those the cache answered; later turns wait.
            if strategy != "generate" or generate.pending is None:
                return False
            answered = sum(1 for m in generate.pending.messages if m.role == "assistant")
            return answered + 1 < len(item.payload.instruction.user_turns)

        items = dialogue_items(paired, strategy, config.candidates)
        asyncio.run(_walk(store, stage, items, generate, retry_failed, turns_left))
    finally:
        exporter.close()
    return write_files(run, result, max_requests, max_bytes)


def write_files(run: Path, result: ExportResult, max_requests: int, max_bytes: int) -> ExportResult:
    """RUN/batch/<stage>-NNN.jsonl, split at the provider's limits, and the key index the import reads."""
    folder = run / BATCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{result.stage}-[0-9][0-9][0-9].jsonl"):
        old.unlink()
    chunk: list[bytes] = []
    size = 0

    def flush() -> None:
        path = folder / f"{result.stage}-{len(result.files) + 1:03d}.jsonl"
        path.write_bytes(b"".join(chunk))
        result.files.append(path)

    for request in result.requests:
        line = (json.dumps(request, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        if chunk and (len(chunk) >= max_requests or size + len(line) > max_bytes):
            flush()
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        flush()
    index_path = folder / f"{result.stage}-index.json"
    index = json.loads(index_path.read_text("utf-8")) if index_path.exists() else {}
    index.update(result.index)  # kept across rounds: an older round's output can still be imported
    index_path.write_text(json.dumps(index, separators=(",", ":")), "utf-8")
    return result


@dataclass
class ImportResult:
    stored: int = 0
    errors: int = 0
    unknown: int = 0
    malformed: int = 0
    problems: list[str] = field(default_factory=list)


def load_index(run: Path) -> dict[str, dict[str, str]]:
    index: dict[str, dict[str, str]] = {}
    for path in sorted((run / BATCH_DIR).glob("*-index.json")):
        index.update(json.loads(path.read_text("utf-8")))
    return index


def import_results(run_dir: str | Path, files: Sequence[Path]) -> ImportResult:
    """Each answered line of a provider's batch output file into the run's call cache."""
    run = Path(run_dir)
    if not (run / STORE_FILE).exists():
        raise ConfigError(f"{run} is not a run directory (no {STORE_FILE})")
    for path in files:
        if not path.is_file():
            raise InputError(str(path), None, "no such file (give the batch output file the provider wrote)")
    index = load_index(run)
    if not index:
        raise ConfigError(f"{run / BATCH_DIR} has no batch index: run `opencharacter batch export` first")
    result = ImportResult()
    with RunLock(run, "batch import"):
        store = RunStore(run)
        try:
            for path in files:
                with path.open(encoding="utf-8") as lines:
                    for number, line in enumerate(lines, 1):
                        if line.strip():
                            _import_line(store, index, result, f"{path}:{number}", line)
            store.flush()
        finally:
            store.close()
    return result


def _import_line(store: RunStore, index: dict[str, Any], result: ImportResult, where: str, line: str) -> None:
    def problem(counter: str, text: str) -> None:
        setattr(result, counter, getattr(result, counter) + 1)
        if len(result.problems) < 10:
            result.problems.append(f"{where}: {text}")

    try:
        row = json.loads(line)
        key = row["custom_id"]
    except (ValueError, KeyError, TypeError):
        problem("malformed", "not a batch output line (JSON with custom_id)")
        return
    entry = index.get(key)
    if entry is None:
        problem("unknown", f"custom_id {key!r} was not exported from this run")
        return
    response = row.get("response") or {}
    if row.get("error") or response.get("status_code") != 200:
        said = row.get("error") or (response.get("body") or {}).get("error") or response.get("status_code")
        problem("errors", f"{key}: {json.dumps(said)[:200]}")
        return
    try:
        completion = parse_response(response.get("body"))
    except BackendError as exc:
        problem("errors", f"{key}: {exc.message}")
        return
    store.put_call(key, entry["prompt_id"], entry["model"], completion)
    result.stored += 1
