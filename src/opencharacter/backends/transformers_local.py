"""Local batched generation with transformers: the default backend, and the embedded model's home.

Concurrent requests are micro-batched (left padding, similar lengths together); a JSON schema is
enforced with xgrammar's constrained decoding, without which a small model's JSON is rarely valid.
The repetition penalty counts generated tokens only (`repetition_penalty`).

`stream` is the same batched decode with a listener on the row (`decode_loop`'s `on_tokens`): a
streamed request shares batches with plain ones, and its tokens reach the caller step by step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Collection, Sequence
from pathlib import Path
from typing import Any

from opencharacter.backends.base import Backend, Capabilities, StreamEvent, TokenBudget
from opencharacter.backends.batching import MicroBatcher
from opencharacter.backends.decode_loop import GrammarMask, TokenObserver, decode
from opencharacter.backends.row_sampling import RowSampler
from opencharacter.backends.token_stream import IncrementalDecoder, TokenSink
from opencharacter.config import BackendConfig
from opencharacter.errors import BackendError, MissingDependencyError
from opencharacter.hashing import canonical_json
from opencharacter.models.embedded import EMBEDDED_ID, EMBEDDED_NAME
from opencharacter.models.loading import chat_prompt_ids
from opencharacter.models.shared_weights import shared_weights
from opencharacter.records import ChatRequest, Completion

DECODING = "penalty-on-generated"
"""Part of the call cache identity: how this backend decodes beyond the request's own parameters.
Changed when the repetition penalty stopped counting prompt tokens, so older cached calls (decoded
the other way) are never replayed as if made now."""

# Prompts longer than this many characters are tokenised in a worker thread: a long chat history
# must not stall the event loop (and every other request) for the time its template takes. Shorter
# ones are tokenised inline, so that concurrent calls reach the micro-batcher in the same tick.
INLINE_TOKENISE_CHARS = 16_384


def repetition_penalty(penalty: float, prompt_width: int) -> list[Any]:
    """A logits processor penalising tokens already *generated*, never those of the prompt.

    transformers' `repetition_penalty` argument also penalises every prompt token, so a character
    avoided the words of its own profile: measured on the recipe's held-out characters, the
    embedded model's lexical fidelity (profile retrieved from the answer by BM25) was 0.355 MRR with
    the prompt penalised and 0.524 without (chance 0.340). Loops are what the penalty is for, and
    they live in the generated text. Rows are left-padded to `prompt_width`, so one offset fits all.
    """
    if penalty == 1.0:
        return []
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    return [RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=prompt_width)]


def pick_device(requested: str) -> str:
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


class LocalModel:
    """A loaded causal LM and tokenizer plus compiled grammars; shared by generation and chat."""

    def __init__(self, model: str, device: str = "auto", seed: int = 0) -> None:
        try:
            import torch
        except ImportError:
            raise MissingDependencyError("torch", "local") from None

        self.device = pick_device(device)
        torch.manual_seed(seed)
        dtype = torch.bfloat16 if self.device.startswith("cuda") and torch.cuda.is_bf16_supported() else None
        # The base's weights are shared with every other local model over the same base (base, tuned
        # student and judge in one evaluation): see models/shared_weights.py.
        self._weights, self._adapter, self.tokenizer = shared_weights(model, self.device, dtype)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._grammars: dict[str, Any] = {}
        self._compiler: Any = None

    @property
    def model(self) -> Any:
        """The loaded model, for reading its config; to run it, use `using()` (or `generate`), which
        switches this model's adapter on: the weights may be shared with other adapters."""
        return self._weights.model

    def using(self) -> contextlib.AbstractContextManager[Any]:
        """The model with this model's adapter (or none) active, held for the `with` block."""
        return self._weights.active(self._adapter)

    def prompt_ids(self, request: ChatRequest) -> list[int]:
        return chat_prompt_ids(self.tokenizer, request)

    @property
    def context_window(self) -> int:
        """Positions the model was trained for (prompt + answer); the tokenizer's limit if smaller."""
        window = getattr(self.model.config, "max_position_embeddings", None) or 2048
        limit = getattr(self.tokenizer, "model_max_length", None)
        return min(window, limit) if isinstance(limit, int) and 0 < limit < 10**9 else window

    def _grammar(self, schema: dict[str, Any]) -> Any:
        try:
            import xgrammar as xgr
        except ImportError:
            raise MissingDependencyError("xgrammar", "local") from None
        key = canonical_json(schema)
        if key not in self._grammars:
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.model.config.vocab_size)
                self._compiler = xgr.GrammarCompiler(info)
            # Compact JSON: free whitespace lets a small model pad forever instead of writing values.
            self._grammars[key] = self._compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        return self._grammars[key]

    def left_padded(self, prompts: list[list[int]]) -> tuple[Any, Any]:
        """(input_ids, attention_mask) of the prompts left-padded to the longest, on the model's device."""
        import torch

        width, pad = max(len(p) for p in prompts), self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        return input_ids, attention

    def generate(
        self, requests: list[ChatRequest], prompts: list[list[int]], sinks: Sequence[TokenSink | None] = ()
    ) -> list[Completion]:
        """One batch of requests sharing sampling parameters (but seeds) and schema.

        Decoded by `decode_loop.decode`, which drops a row from the batch as soon as it finishes
        (transformers' `generate` keeps every row to the longest one's end). A row with a sink
        streams: each token goes to it as it is made, and the row stops once its reader is gone.
        """
        import torch

        sampling = requests[0].sampling
        schema = requests[0].response_schema
        input_ids, attention = self.left_padded(prompts)
        width = input_ids.shape[1]
        processors: list[Any] = repetition_penalty(sampling.repetition_penalty, width)
        if schema is not None:
            processors.append(GrammarMask(self._grammar(schema), len(prompts)))
        if sampling.temperature > 0:  # sampled per request (row_sampling.py), then the forced token is taken
            processors.append(RowSampler([r.sampling.seed for r in requests], sampling.temperature, sampling.nucleus))
        eos_ids = self._eos_ids()
        with self.using() as model, torch.inference_mode():
            rows = decode(model, input_ids, attention, sampling.max_tokens, eos_ids, processors, _observer(sinks))
        completions = []
        for row, prompt in zip(rows, prompts, strict=True):
            stopped = bool(row) and row[-1] in eos_ids  # `decode` ends a row at its end-of-sequence token
            completions.append(
                Completion(
                    text=self.tokenizer.decode(row[:-1] if stopped else row, skip_special_tokens=True),
                    finish_reason="stop" if stopped else "length",
                    prompt_tokens=len(prompt),
                    completion_tokens=len(row),
                )
            )
        return completions

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        found = set(ids if isinstance(ids, list) else [ids]) if ids is not None else set()
        if self.tokenizer.eos_token_id is not None:
            found.add(self.tokenizer.eos_token_id)
        return found


def _observer(sinks: Sequence[TokenSink | None]) -> TokenObserver | None:
    """The decode loop's listener for the streamed rows of a batch (None when nothing streams)."""
    if not any(sinks):
        return None

    def on_tokens(rows: list[int], tokens: list[int]) -> Collection[int]:
        stop = []
        for row, token in zip(rows, tokens, strict=True):
            sink = sinks[row]
            if sink is None:
                continue
            if sink.cancelled:
                stop.append(row)
            else:
                sink.push(token)
        return stop

    return on_tokens


class TransformersBackend(Backend):
    capabilities = Capabilities(structured_output=True, local=True, stream=True)
    decoding = DECODING

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._local: LocalModel | None = None
        self._load_lock = threading.Lock()
        self._batcher: MicroBatcher[tuple[ChatRequest, list[int], TokenSink | None], Completion] = MicroBatcher(
            self._run_batch,
            batch_size=config.batch_size,
            # Each call has its own seed (see RowSampler); everything else must match to share a batch.
            group_of=lambda item: canonical_json(
                [item[0].sampling.model_dump(exclude={"seed"}), item[0].response_schema]
            ),
            length_of=lambda item: len(item[1]),
        )

    @property
    def model_id(self) -> str:
        if self.config.model == EMBEDDED_NAME:
            return EMBEDDED_ID
        return str(Path(self.config.model).name) if Path(self.config.model).is_dir() else self.config.model

    def local_model(self) -> LocalModel:
        with self._load_lock:
            if self._local is None:
                self._local = LocalModel(self.config.model, self.config.device, self.config.seed)
            return self._local

    def _run_batch(self, items: list[tuple[ChatRequest, list[int], TokenSink | None]]) -> list[Completion]:
        requests, prompts, sinks = [r for r, _, _ in items], [p for _, p, _ in items], [s for _, _, s in items]
        local = self.local_model()
        try:
            return local.generate(requests, prompts, sinks) if any(sinks) else local.generate(requests, prompts)
        except RuntimeError as exc:  # e.g. CUDA out of memory: say which batch size to lower
            raise BackendError(f"local generation failed ({exc}); try a smaller --batch-size") from None

    async def _prompt_ids(self, request: ChatRequest) -> list[int]:
        # Only the first caller pays a thread hop (loading takes seconds); later ones must reach
        # the batcher in the same tick so that they share a batch (unless the prompt is long).
        local = self._local or await asyncio.to_thread(self.local_model)
        if sum(len(m.content) for m in request.messages) > INLINE_TOKENISE_CHARS:
            return await asyncio.to_thread(local.prompt_ids, request)
        return local.prompt_ids(request)

    async def complete(self, request: ChatRequest) -> Completion:
        return await self._batcher.submit((request, await self._prompt_ids(request), None))

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        prompt = await self._prompt_ids(request)
        sink = TokenSink(asyncio.get_running_loop())
        produced = asyncio.ensure_future(self._batcher.submit((request, prompt, sink)))
        produced.add_done_callback(sink.settle)
        async for event in sink.events(IncrementalDecoder(self.local_model().tokenizer)):
            yield event

    def token_budget(self, request: ChatRequest) -> TokenBudget:
        local = self.local_model()
        return TokenBudget(len(local.prompt_ids(request)), local.context_window)
