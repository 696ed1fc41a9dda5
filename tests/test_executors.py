"""The executor layer: picklable stages, lazy items, true attempt counts, fatal errors stop at once."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from opencharacter.backends.base import Backend
from opencharacter.backends.fake import FakeBackend
from opencharacter.config import BackendConfig, SynthesisConfig
from opencharacter.engine import Engine
from opencharacter.errors import BackendError, FatalBackendError
from opencharacter.executors import LocalExecutor, WorkItem
from opencharacter.executors.base import TRIAGE_CHUNK
from opencharacter.records import Character, ChatMessage, Completion, Instruction, Persona, Sampling
from opencharacter.stages.dialogues import DialogueStage, Pairing, dialogue_items
from opencharacter.stages.profiles import ProfileStage, profile_items
from opencharacter.store import RunStore

PERSONAS = [Persona(persona=f"A lighthouse keeper number {i} who collects sea glass.") for i in range(6)]


def run(coro):
    return asyncio.run(coro)


def local(tmp_path, backend: Backend, concurrency: int = 4) -> tuple[LocalExecutor, RunStore]:
    store = RunStore(tmp_path / "run")
    engine = Engine(backend, store, concurrency=concurrency, max_retries=0)
    return LocalExecutor(engine), store


def test_stages_items_and_backend_config_pickle_and_work_after_unpickling(tmp_path):
    """What a Ray task receives — stage, BackendConfig, items — crosses a process boundary intact."""
    profile = ProfileStage(Sampling(temperature=0.3, max_tokens=300), 2, "fake:teacher", prompt_version=1)
    config = BackendConfig(backend="fake", model="teacher", options={"delay": 0})
    shipped = pickle.loads(pickle.dumps((profile, config, list(profile_items(PERSONAS)))))
    stage, backend_config, items = shipped
    assert backend_config == config and stage.settings == profile.settings and stage.template == profile.template
    assert [i.id for i in items] == [p.character_id for p in PERSONAS]
    assert "engine" not in vars(stage) and "store" not in vars(stage)

    executor, store = local(tmp_path, FakeBackend(backend_config))
    result = run(executor.run(stage, items))
    assert (result.made, result.failed) == (6, 0)
    characters = list(store.records("profiles", Character))
    assert characters[0] == run(_one(profile, items[0])) and characters[0].model == "fake:teacher"

    dialogue = DialogueStage(SynthesisConfig(per_instruction=1), "fake:teacher")
    instruction = Instruction(
        question_id="q1",
        source="s",
        turns=[ChatMessage(role="user", content="Hi"), ChatMessage(role="assistant", content="Hello there")],
    )
    pairs = [(0, instruction, [characters[0]])]
    dialogue_work = list(dialogue_items(pairs, "rewrite"))
    again, work = pickle.loads(pickle.dumps((dialogue, dialogue_work)))
    assert isinstance(work[0].payload, Pairing) and again.settings("rewrite") == dialogue.settings("rewrite")
    made = run(executor.run(again, work))
    assert made.made == 1
    store.close()


async def _one(stage, item):
    backend = FakeBackend(BackendConfig(backend="fake", model="teacher"))

    async def generate(request, parse, *, prompt_id, max_attempts, first_attempt=0):
        return parse(await backend.complete(request)), 1

    return await stage(item, generate, 0)


def test_items_are_pulled_lazily_through_a_bounded_queue(tmp_path):
    """A huge iterable is never materialised: the executor stays a bounded distance ahead of the work."""
    pulled = 0
    ahead: list[int] = []

    def items():
        nonlocal pulled
        for index in range(2000):
            pulled += 1
            yield WorkItem(f"id{index}", f"{index:09d}", PERSONAS[index % 6])

    class Counting:
        name = "profiles"
        max_attempts = 1
        done = 0

        async def __call__(self, item, generate, first_attempt):
            ahead.append(pulled - Counting.done)
            Counting.done += 1
            return PERSONAS[0]

    executor, store = local(tmp_path, FakeBackend(BackendConfig(backend="fake")), concurrency=4)
    result = run(executor.run(Counting(), items(), total=2000))
    assert result.made == 2000 and pulled == 2000
    # a chunk being triaged + the queue (2 per worker) + one per worker + the one being put
    assert max(ahead) <= TRIAGE_CHUNK + 4 * 2 + 4 + 1
    store.close()


class ScriptBackend(Backend):
    """Plays back outcomes: Completion texts or exceptions."""

    def __init__(self, outcomes, delay: float = 0.0):
        super().__init__(BackendConfig(backend="fake"))
        self.outcomes, self.delay, self.calls = list(outcomes), delay, 0

    async def complete(self, request):
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        outcome = self.outcomes.pop(0) if self.outcomes else '{"no": "profile"}'
        if isinstance(outcome, Exception):
            raise outcome
        return Completion(text=outcome)


def test_a_parse_error_then_a_transport_error_records_two_attempts(tmp_path):
    backend = ScriptBackend(["not json", BackendError("bad gateway", status=502, retryable=False)])
    executor, store = local(tmp_path, backend, concurrency=1)
    stage = ProfileStage(Sampling(), 3, "fake:embedded")
    result = run(executor.run(stage, profile_items(PERSONAS[:1])))
    failure = store.get_failure("profiles", PERSONAS[0].character_id)
    assert result.failed == 1 and backend.calls == 2
    assert failure.attempts == 2 and "bad gateway" in failure.reason
    # --retry-failed continues numbering after both attempts, and counts its own on top.
    backend.outcomes = ["still not json"] * 3
    again = run(executor.run(stage, profile_items(PERSONAS[:1]), retry_failed=True))
    assert again.failed == 1 and store.get_failure("profiles", PERSONAS[0].character_id).attempts == 5
    store.close()


def test_a_fatal_backend_error_stops_the_stage_at_once_and_keeps_what_was_committed(tmp_path):
    personas = [Persona(persona=f"A fisher number {i}.") for i in range(40)]
    profile_json = run(_fake_profile_text(personas[0]))
    outcomes = [profile_json] * 3 + [FatalBackendError("http://x/v1 answered 401 Unauthorized", 401)]
    backend = ScriptBackend(outcomes, delay=0.01)
    executor, store = local(tmp_path, backend, concurrency=2)
    with pytest.raises(FatalBackendError, match="401"):
        run(executor.run(ProfileStage(Sampling(), 1, "fake:embedded"), profile_items(personas)))
    assert store.count("profiles") == 3  # committed results stay
    assert backend.calls <= 8  # of 40 items: in-flight work was cancelled, nothing new was started
    assert store.failures() == []  # a fatal error is not recorded against an item
    store.close()


async def _fake_profile_text(persona):
    from opencharacter.records import ChatRequest
    from opencharacter.stages.profiles import PROFILE_SCHEMA

    backend = FakeBackend(BackendConfig(backend="fake"))
    request = ChatRequest(messages=[ChatMessage(role="user", content=persona.persona)], response_schema=PROFILE_SCHEMA)
    return (await backend.complete(request)).text
