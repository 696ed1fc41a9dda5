"""vLLM offline inference (GPU), behind the `vllm` extra and imported only when this backend is chosen.

Every `complete()` call is submitted at once to one vLLM async engine (`AsyncLLMEngine`, which is
`vllm.v1.engine.async_llm.AsyncLLM`), so vLLM's continuous batching sees every pending request:
nothing waits for a micro-batch to finish. The engine lives on its own event loop in a thread,
because callers may use several loops over a backend's life (`asyncio.run` per chat turn) and the
engine's output handler is bound to the loop it started on.

A model directory written by `opencharacter train --method lora` (adapter_config.json) is served
as vLLM does it: the base model is loaded with LoRA enabled and every request names the adapter
(a `LoRARequest`). JSON schemas go through vLLM's structured outputs (`StructuredOutputsParams`,
xgrammar inside vLLM), compact as in the transformers backend.

`stream` asks vLLM for its documented incremental output (`RequestOutputKind.DELTA`: each
`RequestOutput` carries the new text and token ids) and hands each piece from the engine's loop to
the caller's; closing the stream cancels the request on the engine's loop, and vLLM aborts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

from opencharacter.backends.base import Backend, Capabilities, StreamEvent
from opencharacter.backends.vllm_models import VLLMModel, resolve_vllm_model
from opencharacter.config import BackendConfig
from opencharacter.errors import BackendError, FatalBackendError, MissingDependencyError
from opencharacter.models.loading import chat_prompt_ids
from opencharacter.records import ChatRequest, Completion

# The integer id vLLM keys a loaded adapter by; one backend serves one adapter.
_LORA_ID = 1


def sampling_kwargs(request: ChatRequest) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams`, as plain data so they are testable without vLLM."""
    sampling = request.sampling
    kwargs: dict[str, Any] = {
        "temperature": sampling.temperature,
        "top_p": sampling.nucleus,
        "max_tokens": sampling.max_tokens,
        "repetition_penalty": sampling.repetition_penalty,
    }
    if sampling.seed is not None:
        kwargs["seed"] = sampling.seed
    if request.response_schema is not None:
        # Compact JSON, as the transformers backend: free whitespace lets a small model pad forever.
        kwargs["structured_outputs"] = {"json": request.response_schema, "disable_any_whitespace": True}
    return kwargs


def engine_kwargs(config: BackendConfig, model: VLLMModel | None = None) -> dict[str, Any]:
    """Keyword arguments for `vllm.AsyncEngineArgs`; `options` passes any engine argument through."""
    model = model or resolve_vllm_model(config.model)
    kwargs: dict[str, Any] = {"model": model.base, "seed": config.seed}
    if model.adapter is not None:
        kwargs.update(enable_lora=True, max_lora_rank=model.max_lora_rank, max_loras=1)
    return {**kwargs, **config.options}


def lora_kwargs(model: VLLMModel) -> dict[str, Any] | None:
    """Keyword arguments for `vllm.lora.request.LoRARequest`, or None for a plain model."""
    if model.adapter is None:
        return None
    return {"lora_name": model.adapter_name, "lora_int_id": _LORA_ID, "lora_path": model.adapter}


def _vllm_api() -> SimpleNamespace:
    """The few vLLM names this backend uses: the one import seam (tests put a fake module here)."""
    try:
        import vllm
        from vllm.lora.request import LoRARequest
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
        from vllm.v1.engine.exceptions import EngineDeadError
    except ImportError:
        raise MissingDependencyError("vllm", "vllm") from None
    return SimpleNamespace(
        AsyncEngineArgs=vllm.AsyncEngineArgs,
        AsyncLLMEngine=vllm.AsyncLLMEngine,
        SamplingParams=vllm.SamplingParams,
        StructuredOutputsParams=StructuredOutputsParams,
        RequestOutputKind=RequestOutputKind,
        LoRARequest=LoRARequest,
        EngineDeadError=EngineDeadError,
    )


class VLLMBackend(Backend):
    capabilities = Capabilities(structured_output=True, local=True, stream=True)

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._api = _vllm_api()
        self._model = resolve_vllm_model(config.model)
        lora = lora_kwargs(self._model)
        self._lora = self._api.LoRARequest(**lora) if lora else None
        self._request_ids = itertools.count()
        self._start_lock = threading.Lock()
        self._engine: tuple[asyncio.AbstractEventLoop, Future[Any]] | None = None
        self._tokenizer: Any = None

    def params(self, request: ChatRequest, streamed: bool = False) -> Any:
        kwargs = sampling_kwargs(request)
        if "structured_outputs" in kwargs:
            kwargs["structured_outputs"] = self._api.StructuredOutputsParams(**kwargs["structured_outputs"])
        # Unstreamed: only the finished output, no per-token RequestOutput objects to build and discard.
        kind = self._api.RequestOutputKind.DELTA if streamed else self._api.RequestOutputKind.FINAL_ONLY
        return self._api.SamplingParams(**kwargs, output_kind=kind)

    def prompt(self, request: ChatRequest) -> dict[str, list[int]]:
        """A `TokensPrompt`: the chat template applied as the transformers backend applies it."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.config.options.get("tokenizer", self._model.base))
        return {"prompt_token_ids": chat_prompt_ids(self._tokenizer, request)}

    def _start(self) -> tuple[asyncio.AbstractEventLoop, Future[Any]]:
        """The engine's loop and the engine, created once on that loop's thread (loading takes a while)."""
        with self._start_lock:
            if self._engine is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="vllm-engine", daemon=True).start()

                async def create() -> Any:
                    args = self._api.AsyncEngineArgs(**engine_kwargs(self.config, self._model))
                    return self._api.AsyncLLMEngine.from_engine_args(args)

                self._engine = loop, asyncio.run_coroutine_threadsafe(create(), loop)
            return self._engine

    async def _generate(self, engine: Any, request: ChatRequest) -> Completion:
        final = None
        request_id = f"opencharacter-{next(self._request_ids)}"
        async for output in engine.generate(
            self.prompt(request), self.params(request), request_id, lora_request=self._lora
        ):
            final = output
        if final is None or not final.outputs:
            raise BackendError(f"vLLM returned no output for request {request_id}", retryable=True)
        best = final.outputs[0]
        return Completion(
            text=best.text,
            finish_reason=str(best.finish_reason or "stop"),
            prompt_tokens=len(final.prompt_token_ids or []),
            completion_tokens=len(best.token_ids),
        )

    async def _ready(self) -> tuple[asyncio.AbstractEventLoop, Any]:
        loop, starting = self._start()
        try:
            engine = await asyncio.shield(asyncio.wrap_future(starting))  # one caller cancelled: others wait on
        except Exception as exc:  # the model did not load (unknown model, out of memory): no retry fixes it
            raise FatalBackendError(f"vLLM could not start {self._model.base}: {exc}") from exc
        return loop, engine

    def _failure(self, exc: Exception) -> BackendError:
        if isinstance(exc, self._api.EngineDeadError):
            return FatalBackendError(f"the vLLM engine died: {exc}")
        # vLLM rejected or failed this request (e.g. a prompt over max_model_len)
        return BackendError(f"vLLM generation failed: {type(exc).__name__}: {exc}")

    async def complete(self, request: ChatRequest) -> Completion:
        loop, engine = await self._ready()
        # Runs on the engine's loop; cancelling this await cancels it there, and vLLM aborts the request.
        work = asyncio.run_coroutine_threadsafe(self._generate(engine, request), loop)
        try:
            return await asyncio.wrap_future(work)
        except (BackendError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise self._failure(exc) from exc

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        loop, engine = await self._ready()
        caller = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        request_id = f"opencharacter-{next(self._request_ids)}"
        prompt, params = self.prompt(request), self.params(request, streamed=True)

        def hand_over(kind: str, value: Any) -> None:
            # A closed caller loop (RuntimeError) means nobody reads this stream any more.
            with contextlib.suppress(RuntimeError):
                caller.call_soon_threadsafe(queue.put_nowait, (kind, value))

        async def pump() -> None:  # on the engine's loop
            try:
                async for output in engine.generate(prompt, params, request_id, lora_request=self._lora):
                    hand_over("output", output)
            except Exception as exc:
                hand_over("error", exc)
            else:
                hand_over("end", None)

        work = asyncio.run_coroutine_threadsafe(pump(), loop)
        pieces: list[str] = []
        made, finish = 0, "stop"
        prompt_tokens = len(prompt["prompt_token_ids"])
        try:
            while True:
                kind, value = await queue.get()
                if kind == "error":
                    if isinstance(value, BackendError):
                        raise value
                    raise self._failure(value) from value
                if kind == "end":
                    break
                for best in value.outputs[:1]:
                    made += len(best.token_ids)
                    finish = str(best.finish_reason or finish)
                    if best.text:
                        pieces.append(best.text)
                        yield StreamEvent(best.text)
            if not made and not pieces:
                raise BackendError(f"vLLM returned no output for request {request_id}", retryable=True)
            final = Completion(
                text="".join(pieces), finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=made
            )
            yield StreamEvent("", final)
        finally:
            work.cancel()  # a no-op when it finished; else vLLM aborts the request

    async def aclose(self) -> None:
        """Shut the engine down (frees GPU memory) and stop its loop."""
        started, self._engine = self._engine, None
        if started is not None:
            loop, engine = started
            if engine.done() and not engine.cancelled() and engine.exception() is None:
                engine.result().shutdown()
            loop.call_soon_threadsafe(loop.stop)


__all__ = ["VLLMBackend", "engine_kwargs", "lora_kwargs", "sampling_kwargs"]
