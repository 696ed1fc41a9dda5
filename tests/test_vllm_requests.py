"""vLLM request building, adapter resolution and continuous submission, testable without vLLM or a GPU.

vLLM is not installed here; a minimal stand-in module is put only at the backend's import seam
(`sys.modules["vllm"...]`), recording what our code hands it. What is checked is what our code
builds: engine arguments, LoRA requests, sampling parameters, token prompts, and that every
pending request reaches the engine before any finishes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from opencharacter.backends import build_backend
from opencharacter.backends.vllm_models import resolve_vllm_model, serve_command
from opencharacter.backends.vllm_offline import engine_kwargs, lora_kwargs, sampling_kwargs
from opencharacter.config import BackendConfig
from opencharacter.errors import BackendError, ConfigError, FatalBackendError, MissingDependencyError
from opencharacter.models.loading import resolve_model_path
from opencharacter.records import ChatMessage, ChatRequest, Sampling
from opencharacter.stages.dialogues import rewrite_schema

HUB_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


def write_adapter(directory: Path, base: str, r: int = 16, recorded_base: str | None = None, **extra) -> Path:
    """An adapter directory as `opencharacter train --method lora` leaves it (peft's config + our meta)."""
    directory.mkdir(parents=True)
    config = {"peft_type": "LORA", "base_model_name_or_path": base, "r": r, "lora_alpha": 2 * r, **extra}
    (directory / "adapter_config.json").write_text(json.dumps(config))
    (directory / "adapter_model.safetensors").write_bytes(b"weights")
    if recorded_base:
        (directory / "opencharacter.json").write_text(json.dumps({"base_model": recorded_base, "method": "lora"}))
    return directory


def test_sampling_and_structured_outputs():
    request = ChatRequest(
        messages=[ChatMessage(role="user", content="hi")],
        sampling=Sampling(temperature=0.3, top_p=0.9, max_tokens=99, seed=5),
        response_schema=rewrite_schema(2),
    )
    kwargs = sampling_kwargs(request)
    assert kwargs == {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 99,
        "repetition_penalty": 1.1,
        "seed": 5,
        "structured_outputs": {"json": rewrite_schema(2), "disable_any_whitespace": True},
    }
    assert "structured_outputs" not in sampling_kwargs(request.model_copy(update={"response_schema": None}))


def test_engine_arguments_pass_options_through():
    config = BackendConfig(
        backend="vllm",
        model="meta-llama/Meta-Llama-3-8B-Instruct",
        options={"tensor_parallel_size": 2, "max_model_len": 4096},
    )
    assert engine_kwargs(config) == {
        "model": "meta-llama/Meta-Llama-3-8B-Instruct",
        "seed": 0,
        "tensor_parallel_size": 2,
        "max_model_len": 4096,
    }
    assert lora_kwargs(resolve_vllm_model(config.model)) is None


def test_an_adapter_trained_by_train_loads_its_base_with_lora(tmp_path):
    # opencharacter.json's base wins over peft's (train records what the user named, e.g. 'embedded').
    adapter = write_adapter(tmp_path / "alice-lora", base="/old/machine/path", r=24, recorded_base=HUB_BASE)
    config = BackendConfig(backend="vllm", model=str(adapter), options={"gpu_memory_utilization": 0.5})
    assert engine_kwargs(config) == {
        "model": HUB_BASE,
        "seed": 0,
        "enable_lora": True,
        "max_lora_rank": 32,  # the smallest rank vLLM accepts that holds r=24
        "max_loras": 1,
        "gpu_memory_utilization": 0.5,
    }
    assert lora_kwargs(resolve_vllm_model(str(adapter))) == {
        "lora_name": "alice-lora",
        "lora_int_id": 1,
        "lora_path": str(adapter.resolve()),
    }
    assert serve_command(str(adapter), name="alice", port=8001) == [
        "vllm",
        "serve",
        HUB_BASE,
        "--port",
        "8001",
        "--enable-lora",
        "--lora-modules",
        f"alice={adapter.resolve()}",
        "--max-lora-rank",
        "32",
    ]


def test_plain_peft_adapters_full_fine_tunes_and_bad_adapters(tmp_path):
    peft_only = write_adapter(tmp_path / "peft", base=HUB_BASE, r=8, rank_pattern={"q_proj": 64})
    assert resolve_vllm_model(str(peft_only)).base == HUB_BASE
    assert resolve_vllm_model(str(peft_only)).max_lora_rank == 64  # the largest per-module rank
    full = tmp_path / "full"
    full.mkdir()
    (full / "config.json").write_text("{}")
    assert engine_kwargs(BackendConfig(backend="vllm", model=str(full)))["model"] == str(full)
    served = ["vllm", "serve", str(full), "--port", "8000", "--served-model-name", "alice"]
    assert serve_command(str(full), name="alice") == served
    with pytest.raises(ConfigError, match="above vLLM's largest"):
        resolve_vllm_model(str(write_adapter(tmp_path / "huge", base=HUB_BASE, r=1024)))
    with pytest.raises(ConfigError, match="LoRA adapters only"):
        resolve_vllm_model(str(write_adapter(tmp_path / "ia3", base=HUB_BASE, peft_type="IA3")))


class FakeEngine:
    """Records submissions; holds every request until `expected` are in flight at once, then answers."""

    def __init__(self, args, expected: int) -> None:
        self.args, self.expected = args, expected
        self.submitted: list[tuple] = []
        self.deltas_made = 0
        self.all_in = asyncio.Event()
        self.shut_down = False

    async def generate(self, prompt, params, request_id, *, lora_request=None):
        self.submitted.append((prompt, params, request_id, lora_request, asyncio.get_running_loop()))
        if len(self.submitted) >= self.expected:
            self.all_in.set()
        await asyncio.wait_for(self.all_in.wait(), timeout=10)
        if params.kwargs.get("max_tokens") == 13:
            raise ValueError("prompt is longer than max_model_len")
        ids = prompt["prompt_token_ids"]
        if params.kwargs["output_kind"] == "delta":  # vLLM's incremental output: new text and ids only
            for index, word in enumerate(["Once ", "upon ", "a ", "time."]):
                self.deltas_made = index + 1
                finished = index == 3
                output = types.SimpleNamespace(text=word, token_ids=[index], finish_reason="stop" if finished else None)
                yield types.SimpleNamespace(outputs=[output], prompt_token_ids=ids, finished=finished)
                await asyncio.sleep(0.05)
            return
        output = types.SimpleNamespace(text=f"answer to {len(ids)} tokens", finish_reason="length", token_ids=[1, 2])
        yield types.SimpleNamespace(outputs=[output], prompt_token_ids=ids, finished=True)

    def shutdown(self) -> None:
        self.shut_down = True


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in for the vllm package at the import seam; `state.engines` lists the engines made."""
    state = types.SimpleNamespace(engines=[], expected=1, fail_start=False)

    class Recorded:
        def __init__(self, **kwargs) -> None:
            self.kwargs = kwargs

    class AsyncLLMEngine:
        @staticmethod
        def from_engine_args(args):
            if state.fail_start:
                raise RuntimeError("no such model")
            engine = FakeEngine(args, state.expected)
            state.engines.append(engine)
            return engine

    class EngineDeadError(Exception):
        pass

    vllm = types.ModuleType("vllm")
    vllm.AsyncEngineArgs = type("AsyncEngineArgs", (Recorded,), {})
    vllm.SamplingParams = type("SamplingParams", (Recorded,), {})
    vllm.AsyncLLMEngine = AsyncLLMEngine
    sampling_params = types.ModuleType("vllm.sampling_params")
    sampling_params.StructuredOutputsParams = type("StructuredOutputsParams", (Recorded,), {})
    sampling_params.RequestOutputKind = types.SimpleNamespace(FINAL_ONLY="final-only", DELTA="delta")
    lora_request = types.ModuleType("vllm.lora.request")
    lora_request.LoRARequest = type("LoRARequest", (Recorded,), {})
    exceptions = types.ModuleType("vllm.v1.engine.exceptions")
    exceptions.EngineDeadError = EngineDeadError
    for name, module in {
        "vllm": vllm,
        "vllm.sampling_params": sampling_params,
        "vllm.lora": types.ModuleType("vllm.lora"),
        "vllm.lora.request": lora_request,
        "vllm.v1": types.ModuleType("vllm.v1"),
        "vllm.v1.engine": types.ModuleType("vllm.v1.engine"),
        "vllm.v1.engine.exceptions": exceptions,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    return state


def chat(text: str, **sampling) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(role="user", content=text)], sampling=Sampling(**sampling))


def test_all_pending_requests_reach_one_engine_at_once_with_the_adapter(fake_vllm, tmp_path):
    base = resolve_model_path("embedded")  # a real local base model: its tokenizer builds the prompts
    adapter = write_adapter(tmp_path / "bob", base=base, r=16)
    backend = build_backend(BackendConfig(backend="vllm", model=str(adapter), batch_size=4))
    requests = [chat(f"question {i} " * (i + 1), temperature=0.5, seed=i) for i in range(10)]
    requests.append(chat("a profile", temperature=0.0).model_copy(update={"response_schema": rewrite_schema(1)}))
    fake_vllm.expected = len(requests)  # more than batch_size: none may wait for a batch to finish

    async def main():
        try:
            return await asyncio.gather(*(backend.complete(r) for r in requests))
        finally:
            await backend.aclose()

    completions = asyncio.run(main())
    [engine] = fake_vllm.engines
    assert engine.args.kwargs == {"model": base, "seed": 0, "enable_lora": True, "max_lora_rank": 16, "max_loras": 1}
    assert len(engine.submitted) == len(requests) and engine.shut_down
    assert len({loop for *_, loop in engine.submitted}) == 1  # one engine loop, not the caller's
    assert len({request_id for _, _, request_id, _, _ in engine.submitted}) == len(requests)
    by_ids = {tuple(prompt["prompt_token_ids"]): params for prompt, params, *_ in engine.submitted}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    for request, completion in zip(requests, completions, strict=True):
        messages = [m.model_dump() for m in request.messages]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
        params = by_ids[ids].kwargs
        assert params["output_kind"] == "final-only" and params["temperature"] == request.sampling.temperature
        assert params.get("seed") == request.sampling.seed  # each request keeps its own seed
        assert completion.text == f"answer to {len(ids)} tokens" and completion.prompt_tokens == len(ids)
        assert completion.finish_reason == "length" and completion.completion_tokens == 2
    structured = by_ids[ids].kwargs["structured_outputs"].kwargs
    assert structured == {"json": rewrite_schema(1), "disable_any_whitespace": True}
    lora = engine.submitted[0][3].kwargs
    assert lora == {"lora_name": "bob", "lora_int_id": 1, "lora_path": str(adapter.resolve())}


def test_engine_start_failure_is_fatal_and_a_rejected_request_is_a_backend_error(fake_vllm):
    fake_vllm.fail_start = True
    backend = build_backend(BackendConfig(backend="vllm", model=resolve_model_path("embedded")))
    with pytest.raises(FatalBackendError, match=r"could not start .*no such model"):
        asyncio.run(backend.complete(chat("hi")))
    asyncio.run(backend.aclose())
    fake_vllm.fail_start = False
    backend = build_backend(BackendConfig(backend="vllm", model=resolve_model_path("embedded")))
    with pytest.raises(BackendError, match="max_model_len") as caught:
        asyncio.run(backend.complete(chat("hi", max_tokens=13)))
    assert not isinstance(caught.value, FatalBackendError)
    # The engine outlives the caller's event loop: a second asyncio.run reuses it.
    assert asyncio.run(backend.complete(chat("hi again"))).text.startswith("answer to")
    assert len(fake_vllm.engines) == 1
    asyncio.run(backend.aclose())


def test_stream_yields_vllms_delta_outputs_as_the_engine_makes_them(fake_vllm):
    backend = build_backend(BackendConfig(backend="vllm", model=resolve_model_path("embedded")))

    async def main():
        pieces, made_at_first = [], None
        try:
            async for event in backend.stream(chat("Tell me a story.", temperature=0.0)):
                if event.text and made_at_first is None:
                    made_at_first = fake_vllm.engines[0].deltas_made
                pieces.append(event)
            return pieces, made_at_first
        finally:
            await backend.aclose()

    events, made_at_first = asyncio.run(main())
    [engine] = fake_vllm.engines
    assert engine.submitted[0][1].kwargs["output_kind"] == "delta"
    assert [e.text for e in events] == ["Once ", "upon ", "a ", "time.", ""]
    assert made_at_first == 1  # the first piece was read before the engine made the second
    final = events[-1].final
    assert final.text == "Once upon a time." and final.finish_reason == "stop" and final.completion_tokens == 4


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_missing_vllm_says_which_extra_to_install():
    with pytest.raises(MissingDependencyError) as caught:
        build_backend(BackendConfig(backend="vllm"))
    assert str(caught.value) == "vllm is not installed; run: pip install 'opencharacter[vllm]'"
