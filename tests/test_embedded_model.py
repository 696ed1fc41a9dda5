"""The real thing: the embedded SmolLM2 model generating through each path (slow; CI runs them)."""

from __future__ import annotations

import asyncio

import pytest

from opencharacter.backends import build_backend
from opencharacter.config import BackendConfig
from opencharacter.prompts import load_prompt
from opencharacter.records import ChatMessage, ChatRequest, Persona, Sampling
from opencharacter.serve.server import BackendResponder, serve_in_thread
from opencharacter.stages.profiles import PROFILE_SCHEMA, build_request, parse_profile
from tests.conftest import read_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded():
    backend = build_backend(BackendConfig(backend="transformers", model="embedded", batch_size=4))
    yield backend


def test_constrained_decoding_yields_valid_profiles(embedded):
    personas = [
        Persona(persona=p) for p in ("A retired sailor who paints.", "A young chess coach.", "A baker in Lyon.")
    ]
    template = load_prompt("profile")
    sampling = Sampling(temperature=0.7, max_tokens=320)

    async def main():
        return await asyncio.gather(*(embedded.complete(build_request(p, template, sampling)) for p in personas))

    completions = asyncio.run(main())
    profiles = [parse_profile(c) for c in completions]  # raises if any is not schema-valid JSON
    assert all(p.name and 1 <= p.age <= 120 for p in profiles)
    assert all(c.prompt_tokens > 50 and c.completion_tokens > 10 for c in completions)


def test_a_seeded_request_samples_the_same_text_alone_or_in_any_batch(embedded, monkeypatch):
    """Sampling is per request (RowSampler): requests with different seeds share one generate call,
    and batch companions or earlier draws don't change a seeded answer."""
    local = embedded.local_model()
    batch_sizes = []
    generate = local.generate
    monkeypatch.setattr(
        local, "generate", lambda requests, prompts: batch_sizes.append(len(requests)) or generate(requests, prompts)
    )

    def request(text, seed):
        return ChatRequest(
            messages=[ChatMessage(role="user", content=text)],
            sampling=Sampling(temperature=1.0, top_p=0.95, max_tokens=24, seed=seed),
        )

    probe = request("Describe a harbour at dawn.", seed=11)
    others = [request(t, seed=i) for i, t in enumerate(["Hi.", "Tell me a long story about a fox and a crow.", "2+2?"])]

    async def batch(requests):
        return await asyncio.gather(*(embedded.complete(r) for r in requests))

    alone = asyncio.run(batch([probe]))[0].text
    crowded = asyncio.run(batch([others[1], probe, *others[::2]]))[1].text
    assert batch_sizes == [1, 4], "differently seeded requests must still be batched together"
    assert alone == crowded and alone.strip()
    reseeded = request("Describe a harbour at dawn.", seed=12)
    assert asyncio.run(batch([reseeded]))[0].text != alone


def test_free_text_batch_generation_reports_tokens_and_stops(embedded):
    request = ChatRequest(
        messages=[ChatMessage(role="user", content="Name three colours.")],
        sampling=Sampling(temperature=0.0, max_tokens=40),
    )
    short = ChatRequest(messages=request.messages, sampling=Sampling(temperature=0.0, max_tokens=3))

    async def main():
        return await asyncio.gather(embedded.complete(request), embedded.complete(short))

    full, cut = asyncio.run(main())
    assert full.text.strip() and full.completion_tokens <= 40
    assert cut.finish_reason == "length" and cut.completion_tokens == 3
    # Greedy decoding is deterministic: the same request gives the same text.
    again = asyncio.run(embedded.complete(request))
    assert again.text == full.text


def test_openai_backend_against_a_server_answering_from_the_embedded_model(embedded, tmp_path):
    with serve_in_thread(BackendResponder(embedded)) as url:
        client = build_backend(BackendConfig(backend="openai", base_url=url, model="smol"))

        async def main():
            try:
                return await client.complete(
                    ChatRequest(
                        messages=[ChatMessage(role="user", content="Describe a persona.")],
                        # Seeded as the engine seeds every call, so the test does not depend on luck;
                        # the pipeline's profile budget (320), since a cut profile is not JSON.
                        sampling=Sampling(temperature=0.5, max_tokens=320, seed=1),
                        response_schema=PROFILE_SCHEMA,
                    )
                )
            finally:
                await client.aclose()

        completion = asyncio.run(main())
    assert parse_profile(completion).name


def test_demo_pipeline_end_to_end_on_the_embedded_model(tmp_path, run_cli):
    run = tmp_path / "demo"
    code, _, err = run_cli(
        "demo", "--run", run, "--personas", 2, "--instructions", 3, "--per-instruction", 1, "--no-train", "-q"
    )
    assert code == 0, err
    characters = read_jsonl(run / "characters.jsonl")
    dialogues = read_jsonl(run / "dialogues.jsonl")
    failures = read_jsonl(run / "failures.jsonl")
    assert len(characters) + sum(f["stage"] == "profiles" for f in failures) == 2
    assert characters, "the embedded model made at least one profile"
    made = {(d["strategy"]) for d in dialogues}
    assert "generate" in made
    assert len(dialogues) + sum(f["stage"] == "dialogues" for f in failures) == 3 * 2
    for name in ("sharegpt.jsonl", "alpaca.jsonl", "messages.jsonl", "dialogues.parquet"):
        assert (run / "exports" / name).exists()
    assert "SmolLM2-135M-Instruct (embedded)" in (run / "README.md").read_text()
    assert "real data needs a strong teacher model" in " ".join(err.split())
