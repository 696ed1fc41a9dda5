"""OpenAI Batch API files: export the calls a stage still needs, import the provider's answers.

`export_*` runs the real stage (built as the command builds it, `work.py`) over the items the
executor would run (`triage`) through an engine whose cache misses record the request, as the
openai backend would send it, and stop that item (`ExportEngine`). `import_results` puts each
answer into the call cache under the same key, so rerunning the stage with the same options
completes from the cache without calling anyone.

A generated (G) dialogue needs one round per user turn: turn 2's request holds turn 1's answer,
so it can only be exported once turn 1 has been imported.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opencharacter.backends import build_backend
from opencharacter.backends.http_payload import build_payload, parse_response
from opencharacter.config import BackendConfig, ProfilesConfig, SynthesisConfig
from opencharacter.engine import Engine
from opencharacter.engine.engine import with_call_seed
from opencharacter.errors import BackendError, ConfigError, InputError, ParseError
from opencharacter.executors import Stage, StageResult, WorkItem
from opencharacter.executors.base import triage
from opencharacter.fileio import atomic_open
from opencharacter.pipeline.work import ProfilesWork, SynthesisWork
from opencharacter.records import ChatRequest, Completion, Instruction, Persona, Strategy
from opencharacter.store import RunStore
from opencharacter.store.identity import RunIdentity
from opencharacter.store.layout import BATCH, existing_run
from opencharacter.store.lock import RunLock

BATCH_DIR = BATCH
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


class ExportEngine(Engine):
    """The engine, whose cache misses record the request (as the openai backend would send it) and
    stop the item, instead of calling: the attempt loop, cache keys and seeds are the engine's own."""

    def __init__(self, backend: Any, store: RunStore, model: str, result: ExportResult) -> None:
        super().__init__(backend, store)
        self.model, self.result = model, result
        self.pending: ChatRequest | None = None

    async def call(self, request: ChatRequest, key: str, prompt_id: str) -> Completion:
        self.pending = request
        if key not in self.result.index:  # two items asking the same call: the cache answers both
            body = build_payload(with_call_seed(request, key), self.model)
            self.result.requests.append({"custom_id": key, "method": "POST", "url": CHAT_URL, "body": body})
            self.result.index[key] = {"prompt_id": prompt_id, "model": self.backend.model_id}
        raise _Pending


async def _walk(
    store: RunStore, stage: Stage[Any, Any], items: Iterable[WorkItem[Any]], engine: ExportEngine,
    retry_failed: bool, turns_left: Callable[[WorkItem[Any]], bool],
) -> None:  # fmt: skip
    result = engine.result
    seen = StageResult(result.stage, total=0)
    for item, failure in triage(store, stage.name, items, seen, retry_failed=retry_failed):
        engine.pending = None
        try:
            await stage(item, engine.generate_parsed, failure.attempts if failure else 0)
        except _Pending:
            result.pending_items += 1
            if turns_left(item):
                result.later_turns += 1
            continue
        except ParseError:
            result.would_fail += 1
            continue
        result.ready += 1
    result.items += seen.total
    result.done += seen.done_before
    result.failed_before += seen.skipped_failed


class _Exporter:
    """The run's store and an engine on the teacher backend (built only for its cache keys), with the
    run's identity checked as the command that finishes from the cache will check it."""

    def __init__(self, run_dir: Path, backend: BackendConfig, create: bool, result: ExportResult) -> None:
        if not create:
            existing_run(run_dir)
        self.run_dir = run_dir
        self.lock = RunLock(run_dir, "batch export").acquire() if run_dir.exists() else None
        self.store = RunStore(run_dir)
        self.backend = build_backend(backend)
        self.engine = ExportEngine(self.backend, self.store, backend.model, result)
        self.identity = RunIdentity(self.store, run_dir)
        try:
            self.identity.teacher(self.backend.model_id, self.backend.decoding, record=False)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        asyncio.run(self.backend.aclose())
        self.store.close()
        if self.lock is not None:
            self.lock.release()


def export_profiles(
    run_dir: str | Path, personas: Iterable[Persona], config: ProfilesConfig, backend: BackendConfig,
    retry_failed: bool = False, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES,
) -> ExportResult:  # fmt: skip
    """The profile calls `opencharacter profiles` would still make, as batch files under RUN/batch."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    result = ExportResult("profiles")
    exporter = _Exporter(run, backend, True, result)
    try:
        work = ProfilesWork(config, exporter.backend.model_id)
        work.check(exporter.identity, record=False)
        walk = _walk(exporter.store, work.stage, work.items(personas), exporter.engine, retry_failed, lambda _: False)
        asyncio.run(walk)
    finally:
        exporter.close()
    return write_files(run, result, max_requests, max_bytes)


def export_dialogues(
    run_dir: str | Path, sources: Sequence[Iterable[Instruction]], strategy: Strategy, config: SynthesisConfig,
    backend: BackendConfig, retry_failed: bool = False, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES,
) -> ExportResult:  # fmt: skip
    """The dialogue calls `opencharacter synthesize --strategy S` would still make (this round), for
    each instruction file's instructions (`sources`) in the order `synthesize` is given them."""
    run = Path(run_dir)
    result = ExportResult(strategy)
    exporter = _Exporter(run, backend, False, result)
    try:
        work = SynthesisWork(config, exporter.backend.model_id)
        work.check(exporter.identity, [strategy], record=False)
        work.pair(exporter.store, record=False)  # the pairing `synthesize` will record, drawn the same way
        engine = exporter.engine

        def turns_left(item: WorkItem[Any]) -> bool:
            # The pending call answers the turn after those the cache answered; later turns wait.
            if strategy != "generate" or engine.pending is None:
                return False
            answered = sum(1 for m in engine.pending.messages if m.role == "assistant")
            return answered + 1 < len(item.payload.instruction.user_turns)

        for instructions in sources:
            items = work.items(instructions, strategy)
            asyncio.run(_walk(exporter.store, work.stage, items, engine, retry_failed, turns_left))
    finally:
        exporter.close()
    return write_files(run, result, max_requests, max_bytes)


def write_files(run: Path, result: ExportResult, max_requests: int, max_bytes: int) -> ExportResult:
    """RUN/batch/<stage>-NNN.jsonl, split at the provider's limits, and the key index the import reads."""
    folder = run / BATCH
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{result.stage}-[0-9][0-9][0-9].jsonl"):
        old.unlink()
    chunk: list[bytes] = []
    size = 0

    def flush() -> None:
        path = folder / f"{result.stage}-{len(result.files) + 1:03d}.jsonl"
        with atomic_open(path, "wb") as stream:
            stream.write(b"".join(chunk))
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
    with atomic_open(index_path) as stream:
        stream.write(json.dumps(index, separators=(",", ":")))
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
    for path in sorted((run / BATCH).glob("*-index.json")):
        index.update(json.loads(path.read_text("utf-8")))
    return index


def import_results(run_dir: str | Path, files: Sequence[Path]) -> ImportResult:
    """Each answered line of a provider's batch output file into the run's call cache."""
    run = existing_run(run_dir)
    for path in files:
        if not path.is_file():
            raise InputError(str(path), None, "no such file (give the batch output file the provider wrote)")
    index = load_index(run)
    if not index:
        raise ConfigError(f"{run / BATCH} has no batch index: run `opencharacter batch export` first")
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
