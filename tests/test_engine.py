from __future__ import annotations

import asyncio

import pytest

from opencharacter.backends.base import Backend
from opencharacter.config import BackendConfig
from opencharacter.engine import Engine
from opencharacter.errors import BackendError, ParseError
from opencharacter.records import ChatMessage, ChatRequest, Completion, Sampling
from opencharacter.store import RunStore


class ScriptBackend(Backend):
    """Plays back a list of outcomes: Completion texts or BackendErrors."""

    def __init__(self, outcomes):
        super().__init__(BackendConfig(backend="fake"))
        self.outcomes = list(outcomes)
        self.calls = 0

    async def complete(self, request):
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return Completion(text=outcome, completion_tokens=1)


REQUEST = ChatRequest(messages=[ChatMessage(role="user", content="hi")])


def engine_for(tmp_path, backend, sleeps=None):
    async def fake_sleep(seconds):
        if sleeps is not None:
            sleeps.append(seconds)

    return Engine(backend, RunStore(tmp_path / "run"), max_retries=3, sleep=fake_sleep)


def test_a_finished_call_is_replayed_from_the_store(tmp_path):
    backend = ScriptBackend(["one"])
    engine = engine_for(tmp_path, backend)
    first = asyncio.run(engine.generate(REQUEST, prompt_id="p@v1"))
    again = engine_for(tmp_path, backend)  # a new process would open the same store
    second = asyncio.run(again.generate(REQUEST, prompt_id="p@v1"))
    assert first.text == second.text == "one"
    assert backend.calls == 1 and again.stats.cached_calls == 1


def test_anything_that_shapes_a_call_changes_its_key(tmp_path):
    engine = engine_for(tmp_path, ScriptBackend([]))
    base = engine.cache_key(REQUEST, "p@v1", 0)
    hotter = REQUEST.model_copy(update={"sampling": Sampling(temperature=1.0)})
    assert (
        len(
            {
                base,
                engine.cache_key(REQUEST, "p@v2", 0),
                engine.cache_key(REQUEST, "p@v1", 1),
                engine.cache_key(hotter, "p@v1", 0),
            }
        )
        == 4
    )


def test_retryable_errors_are_retried_with_backoff_and_retry_after_floor(tmp_path):
    sleeps: list[float] = []
    backend = ScriptBackend(
        [
            BackendError("busy", status=503, retryable=True),
            BackendError("slow down", status=429, retryable=True, retry_after=2.5),
            "ok",
        ]
    )
    engine = engine_for(tmp_path, backend, sleeps)
    assert asyncio.run(engine.generate(REQUEST, prompt_id="p@v1")).text == "ok"
    assert backend.calls == 3 and engine.stats.retries == 2
    assert 0 <= sleeps[0] <= 0.5 and sleeps[1] >= 2.5


def test_non_retryable_errors_and_exhausted_retries_raise(tmp_path):
    backend = ScriptBackend([BackendError("bad request", status=400, retryable=False)])
    with pytest.raises(BackendError, match="bad request"):
        asyncio.run(engine_for(tmp_path, backend).generate(REQUEST, prompt_id="p@v1"))
    assert backend.calls == 1
    flaky = ScriptBackend([BackendError("down", status=500, retryable=True)] * 4)
    with pytest.raises(BackendError, match="down"):
        asyncio.run(engine_for(tmp_path, flaky).generate(REQUEST, prompt_id="q@v1"))
    assert flaky.calls == 4  # one try + max_retries=3


def test_invalid_output_gets_fresh_attempts_then_a_parse_error(tmp_path):
    def parse(completion):
        if completion.text != "good":
            raise ParseError("not good", raw=completion.text)
        return completion.text

    backend = ScriptBackend(["bad", "good"])
    engine = engine_for(tmp_path, backend)
    value, attempts = asyncio.run(engine.generate_parsed(REQUEST, parse, prompt_id="p@v1", max_attempts=3))
    assert (value, attempts, backend.calls) == ("good", 2, 2)
    failing = ScriptBackend(["bad", "worse"])
    with pytest.raises(ParseError, match="after 2 attempts") as caught:
        asyncio.run(engine_for(tmp_path, failing).generate_parsed(REQUEST, parse, prompt_id="x@v1", max_attempts=2))
    assert caught.value.raw == "worse"


def test_backoff_grows_and_is_capped():
    assert all(0 <= Engine.backoff(r, None) <= min(30, 0.5 * 2**r) for r in range(12))
    assert Engine.backoff(0, 7.0) >= 7.0


def test_a_local_model_retrained_in_place_gets_new_cache_keys(tmp_path):
    """The cache keys on the model's files, not its directory name: new weights, new answers."""
    from opencharacter.backends import build_backend

    model = tmp_path / "models" / "m1"
    model.mkdir(parents=True)
    (model / "adapter_model.safetensors").write_bytes(b"first weights")
    (model / "loss.png").write_bytes(b"a report, not the model")
    backend = build_backend(BackendConfig(backend="fake", model=str(model)))
    before = Engine(backend, RunStore(tmp_path / "run")).cache_key(REQUEST, "p@v1", 0)
    assert backend.cache_identity.startswith(f"fake:{model}@")
    (model / "loss.png").write_bytes(b"a redrawn report")  # reports beside the weights don't count
    assert Engine(build_backend(backend.config), RunStore(tmp_path / "run")).cache_key(REQUEST, "p@v1", 0) == before
    (model / "adapter_model.safetensors").write_bytes(b"retrained weights, longer")
    after = Engine(build_backend(backend.config), RunStore(tmp_path / "run")).cache_key(REQUEST, "p@v1", 0)
    assert after != before
    remote = build_backend(BackendConfig(backend="openai", base_url="http://127.0.0.1:9/v1", model=str(model)))
    assert remote.cache_identity == str(model)  # a served model's name is all the client knows


def test_every_call_is_sent_with_a_seed_derived_from_its_key(tmp_path):
    """Reruns reproduce (same call, same seed); retries are fresh draws (new attempt, new seed)."""
    from opencharacter.engine.engine import with_call_seed

    sent = []

    class Recording(ScriptBackend):
        async def complete(self, request):
            sent.append(request.sampling.seed)
            return await super().complete(request)

    engine = engine_for(tmp_path, Recording(["not json", '{"ok": 1}']))

    def parse(completion):
        if not completion.text.startswith("{"):
            raise ParseError("not JSON", raw=completion.text)
        return completion.text

    assert asyncio.run(engine.generate_parsed(REQUEST, parse, prompt_id="p@v1", max_attempts=2)) == ('{"ok": 1}', 2)
    first, retry = sent
    assert first != retry and all(isinstance(s, int) and 0 <= s < 2**31 for s in sent)
    assert with_call_seed(REQUEST, engine.cache_key(REQUEST, "p@v1", 0)).sampling.seed == first  # as a rerun would
    user_seeded = REQUEST.model_copy(update={"sampling": Sampling(seed=7)})
    assert with_call_seed(user_seeded, "k").sampling.seed != with_call_seed(REQUEST, "k").sampling.seed
    assert REQUEST.sampling.seed is None  # the caller's request is not modified
