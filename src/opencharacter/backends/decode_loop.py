"""Batched decoding that drops each row from the batch as soon as it has finished.

`model.generate` keeps every row of a batch until the longest is done: rows that stopped still run
through the model, as padding, at full cost. On a CPU, where a step costs about the same per row,
that is most of the work whenever lengths vary: measured with the embedded model in the recipe's
evaluation, the question batch ran to 142 tokens for answers averaging 55, the score anchors to 320
for an average of 130. Here a finished row leaves the batch (and the key/value cache) at once.

Decoding is otherwise the same as `generate(do_sample=False)` with the given logits processors:
prefill of the left-padded prompts with positions from the attention mask, one token per step, the
processors applied in order, then the most likely token. A processor that keeps per-row state
implements `keep(indices)`, which is called with the rows that remain whenever some leave.

Streaming lives here too: an `on_tokens` observer sees each step's new tokens as they are made (for
`Backend.stream`: a streamed answer shows its first token after one step, not after the batch), and
may name rows to stop, which then leave the batch like finished ones (a client that hung up).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol


class RowProcessor(Protocol):
    def __call__(self, input_ids: Any, scores: Any) -> Any: ...


TokenObserver = Callable[[list[int], list[int]], Collection[int]]
"""`on_tokens(rows, tokens)`: the original row numbers still decoding and the token each just made;
returns the rows (original numbers) to stop now, e.g. those whose listener went away."""


def decode(
    model: Any,
    input_ids: Any,
    attention: Any,
    max_new_tokens: int,
    eos_ids: set[int],
    processors: Sequence[RowProcessor],
    on_tokens: TokenObserver | None = None,
) -> list[list[int]]:
    """Each row's new tokens, ending with its end-of-sequence token when it stopped before the limit.

    Must run under `torch.inference_mode()`. `input_ids` and `attention` are (rows, width), the
    prompts left-padded to the same width. A row stopped by `on_tokens` ends without one.
    """
    import torch

    rows = int(input_ids.shape[0])
    made: list[list[int]] = [[] for _ in range(rows)]
    live = list(range(rows))  # original row of each row still in the batch
    positions = attention.long().cumsum(-1) - 1
    positions = positions.masked_fill(attention == 0, 1)
    cache_arg = _cache_argument(model)
    # logits_to_keep=1: only the last position's logits (the prompt's would be rows × width × vocab).
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True, logits_to_keep=1)
    cache = _cache_of(out)
    logits = out.logits[:, -1, :].to(dtype=torch.float32)
    sequences, next_position = input_ids, positions[:, -1:] + 1
    for step in range(max_new_tokens):
        scores = logits
        for processor in processors:
            scores = processor(sequences, scores)
        tokens = scores.argmax(dim=-1)
        sequences = torch.cat([sequences, tokens[:, None]], dim=-1)
        kept = []
        made_now = tokens.tolist()
        for index, token in enumerate(made_now):
            made[live[index]].append(token)
            if token not in eos_ids:
                kept.append(index)
        if on_tokens is not None:
            stopped = on_tokens(list(live), made_now)
            if stopped:
                kept = [index for index in kept if live[index] not in stopped]
        if not kept or step == max_new_tokens - 1:
            break
        attention = torch.cat([attention, attention.new_ones((attention.shape[0], 1))], dim=-1)
        if len(kept) < len(live):
            indices = torch.tensor(kept, device=tokens.device)
            sequences, attention, tokens = sequences[indices], attention[indices], tokens[indices]
            next_position = next_position[indices]
            cache.batch_select_indices(indices)
            for processor in processors:
                keep = getattr(processor, "keep", None)
                if keep is not None:
                    keep(indices)
            live = [live[index] for index in kept]
        out = model(
            input_ids=tokens[:, None],
            attention_mask=attention,
            position_ids=next_position,
            use_cache=True,
            **{cache_arg: cache},
        )
        cache = _cache_of(out)
        logits = out.logits[:, -1, :].to(dtype=torch.float32)
        next_position = next_position + 1
    return made


def _cache_argument(model: Any) -> str:
    """transformers 5 renamed `past_key_values` to `cache` (the old name warns, and goes in 5.40).

    A PEFT model's `forward` takes **kwargs, so the name is read from the model it wraps.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _cache_of(output: Any) -> Any:
    return output.cache if getattr(output, "cache", None) is not None else output.past_key_values


class GrammarMask:
    """xgrammar's constrained decoding as a row processor: one matcher per row, rows can leave.

    The same steps as `xgrammar.contrib.hf.LogitsProcessor` (accept the last token, fill the
    row's bitmask, mask the logits), with `keep` to follow the batch as rows finish.
    """

    def __init__(self, compiled: Any, rows: int) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self._vocab = compiled.tokenizer_info.vocab_size
        self._matchers = [xgr.GrammarMatcher(compiled) for _ in range(rows)]
        self._bitmask = xgr.allocate_token_bitmask(rows, self._vocab)
        self._started = False

    def keep(self, indices: Any) -> None:
        self._matchers = [self._matchers[index] for index in indices.tolist()]
        self._bitmask = self._xgr.allocate_token_bitmask(len(self._matchers), self._vocab)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self._started:
            for row, matcher in enumerate(self._matchers):
                if not matcher.is_terminated() and not matcher.accept_token(int(input_ids[row, -1])):
                    raise RuntimeError("the grammar rejected a token it had allowed")
        self._started = True
        for row, matcher in enumerate(self._matchers):
            if not matcher.is_terminated():
                matcher.fill_next_token_bitmask(self._bitmask, row)
        device = scores.device
        on_host = scores if device.type in ("cpu", "cuda") else scores.to("cpu")
        self._xgr.apply_token_bitmask_inplace(on_host, self._bitmask.to(on_host.device))
        return on_host if on_host is scores else on_host.to(device)
