"""vLLM offline inference (GPU), behind the `vllm` extra and imported only when this backend is chosen.

Requests are micro-batched into one `LLM.chat` call; vLLM's own scheduler does the rest. JSON
schemas go through vLLM's structured outputs (xgrammar inside vLLM).
"""

from __future__ import annotations

from typing import Any

from opencharacter.backends.base import Backend, Capabilities
from opencharacter.backends.batching import MicroBatcher
from opencharacter.backends.model_loading import resolve_model_path
from opencharacter.config import BackendConfig
from opencharacter.errors import MissingDependencyError
from opencharacter.records import ChatRequest, Completion


def sampling_kwargs(request: ChatRequest) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams`, as plain data so they are testable without vLLM."""
    sampling = request.sampling
    kwargs: dict[str, Any] = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "repetition_penalty": sampling.repetition_penalty,
    }
    if sampling.seed is not None:
        kwargs["seed"] = sampling.seed
    if request.response_schema is not None:
        kwargs["structured_outputs"] = {"json": request.response_schema}
    return kwargs


def engine_kwargs(config: BackendConfig) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM`; `options` passes any engine argument through."""
    return {"model": resolve_model_path(config.model), "seed": config.seed, **config.options}


class VLLMBackend(Backend):
    capabilities = Capabilities(structured_output=True, local=True)

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        try:
            import vllm
        except ImportError:
            raise MissingDependencyError("vllm", "vllm") from None
        self._vllm = vllm
        self._llm: Any = None
        self._batcher: MicroBatcher[ChatRequest, Completion] = MicroBatcher(
            self._run_batch,
            batch_size=max(config.batch_size, config.concurrency),
            group_of=lambda _request: 0,  # vLLM mixes sampling params within one call
            length_of=lambda _request: 0,
        )

    def _params(self, request: ChatRequest) -> Any:
        kwargs = sampling_kwargs(request)
        if "structured_outputs" in kwargs:
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(**kwargs["structured_outputs"])
        return self._vllm.SamplingParams(**kwargs)

    def _run_batch(self, requests: list[ChatRequest]) -> list[Completion]:
        if self._llm is None:
            self._llm = self._vllm.LLM(**engine_kwargs(self.config))
        conversations = [[m.model_dump() for m in r.messages] for r in requests]
        outputs = self._llm.chat(conversations, [self._params(r) for r in requests], use_tqdm=False)
        completions = []
        for output in outputs:
            best = output.outputs[0]
            completions.append(
                Completion(
                    text=best.text,
                    finish_reason=str(best.finish_reason or "stop"),
                    prompt_tokens=len(output.prompt_token_ids or []),
                    completion_tokens=len(best.token_ids),
                )
            )
        return completions

    async def complete(self, request: ChatRequest) -> Completion:
        return await self._batcher.submit(request)


__all__ = ["VLLMBackend", "engine_kwargs", "sampling_kwargs"]
