"""Decoding that drops finished rows: token for token what transformers' `generate` makes, with
finished rows leaving the batch (the embedded model, real generation)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xgrammar")

from opencharacter.backends.decode_loop import GrammarMask, decode  # noqa: E402
from opencharacter.backends.row_sampling import RowSampler  # noqa: E402
from opencharacter.backends.transformers_local import repetition_penalty  # noqa: E402
from opencharacter.records import ChatMessage, ChatRequest, Sampling  # noqa: E402

QUESTIONS = [
    "Say hi.",
    "Write a long story about a dragon who learns to cook pasta in Rome.",
    "What is 2+2?",
    "Describe your childhood in detail.",
    "Give me a one-word answer: yes or no?",
    "List ten animals and one fact about each.",
]
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "minLength": 1, "maxLength": 200}},
    "required": ["answer"],
    "additionalProperties": False,
}
MAX_TOKENS = 48


class BatchSizes:
    """A pass-through processor recording how many rows each step decodes."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, input_ids, scores):
        self.sizes.append(int(scores.shape[0]))
        return scores


@pytest.fixture(scope="module")
def local():
    from opencharacter.backends.transformers_local import TransformersBackend
    from opencharacter.config import BackendConfig

    return TransformersBackend(BackendConfig()).local_model()


def batch(local, temperature, schema):
    requests = [
        ChatRequest(
            messages=[ChatMessage(role="user", content=q)],
            sampling=Sampling(temperature=temperature, max_tokens=MAX_TOKENS, seed=100 + i),
            response_schema=schema,
        )
        for i, q in enumerate(QUESTIONS)
    ]
    prompts = [local.prompt_ids(r) for r in requests]
    input_ids, attention = local.left_padded(prompts)
    width = input_ids.shape[1]

    def processors(grammar):
        made = repetition_penalty(1.1, width)
        if schema is not None:
            made.append(grammar(local._grammar(schema)))
        if temperature > 0:
            made.append(RowSampler([r.sampling.seed for r in requests], temperature, 0.95))
        return made

    return input_ids, attention, width, processors


def until_eos(row, eos):
    stop = next((i for i, token in enumerate(row) if token in eos), None)
    return row if stop is None else row[: stop + 1]


@pytest.mark.parametrize(("temperature", "schema"), [(0.0, None), (0.7, None), (0.7, SCHEMA)])
def test_same_tokens_as_transformers_generate_with_finished_rows_leaving(local, temperature, schema):
    import xgrammar as xgr

    input_ids, attention, width, processors = batch(local, temperature, schema)
    eos = local._eos_ids()
    with torch.inference_mode(), local.using() as model:
        reference = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=MAX_TOKENS,
            pad_token_id=local.tokenizer.pad_token_id,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            logits_processor=processors(xgr.contrib.hf.LogitsProcessor),
        )
        sizes = BatchSizes()
        rows = decode(
            model,
            input_ids,
            attention,
            MAX_TOKENS,
            eos,
            [sizes, *processors(lambda compiled: GrammarMask(compiled, len(QUESTIONS)))],
        )
    expected = [until_eos(row, eos) for row in reference[:, width:].tolist()]
    assert rows == expected
    finished_early = sum(len(row) < MAX_TOKENS for row in rows)
    assert finished_early >= 2  # the prompts were chosen so that some rows stop early...
    assert sizes.sizes[0] == len(QUESTIONS) and sizes.sizes[-1] < len(QUESTIONS)  # ...and those rows left
    assert sizes.sizes == sorted(sizes.sizes, reverse=True)


def test_a_token_observer_sees_every_token_as_made_and_can_stop_one_row(local):
    """Streaming's hook: each step's tokens reach the observer; a row it stops (a client that hung
    up) leaves the batch at once, and the other rows decode exactly as without it."""
    input_ids, attention, _, processors = batch(local, 0.0, None)
    eos = local._eos_ids()
    seen: dict[int, list[int]] = {}
    steps = []

    def observe(rows, tokens):
        steps.append(len(rows))
        for row, token in zip(rows, tokens, strict=True):
            seen.setdefault(row, []).append(token)
        return {1} if len(seen[1]) == 3 else ()

    with torch.inference_mode(), local.using() as model:
        plain = decode(model, input_ids, attention, MAX_TOKENS, eos, processors(None))
        observed = decode(model, input_ids, attention, MAX_TOKENS, eos, processors(None), observe)
    assert observed[1] == plain[1][:3]  # stopped after its third token, without an end-of-sequence token
    assert [row for i, row in enumerate(observed) if i != 1] == [row for i, row in enumerate(plain) if i != 1]
    assert seen == dict(enumerate(observed))  # every token, in order, as it was made
    assert steps[0] == len(QUESTIONS) and steps[3] <= steps[2] - 1  # row 1 had left the batch
