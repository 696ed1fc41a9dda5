"""Local decoding: transformers' `generate` (baseline) vs `decode_loop.decode`, same batch, same run.

`generate` keeps every row of a batch until the longest one ends; `decode` drops a row as soon as
it finishes. Both decode the same left-padded batch of the embedded model with the backend's own
processors (repetition penalty on generated tokens, per-row sampler, xgrammar for a schema), so the
rows must come out token for token the same; the bench says how many do and prints the time ratio.

    python bench/local_decoding.py                 # a batch of 40, three workloads
    python bench/local_decoding.py --rows 16 --max-tokens 96
"""

from __future__ import annotations

import argparse
import time

import torch
import xgrammar as xgr

from opencharacter.backends.decode_loop import GrammarMask, decode
from opencharacter.backends.row_sampling import RowSampler
from opencharacter.backends.transformers_local import TransformersBackend, repetition_penalty
from opencharacter.config import BackendConfig
from opencharacter.records import ChatMessage, ChatRequest, Sampling

QUESTIONS = [
    "Say hi.",
    "Write a long story about a dragon who learns to cook pasta in Rome.",
    "What is 2+2?",
    "Describe your childhood in detail.",
    "Name three colours.",
    "Explain photosynthesis to a child.",
    "Give me a one-word answer: yes or no?",
    "List ten animals and one fact about each.",
]
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "minLength": 1, "maxLength": 400}},
    "required": ["answer"],
    "additionalProperties": False,
}
WORKLOADS = [("greedy text", 0.0, None), ("sampled text", 0.7, None), ("sampled JSON (schema)", 0.7, SCHEMA)]


def run(local, rows: int, max_tokens: int, temperature: float, schema, baseline: bool):
    requests = [
        ChatRequest(
            messages=[ChatMessage(role="user", content=QUESTIONS[i % len(QUESTIONS)])],
            sampling=Sampling(temperature=temperature, max_tokens=max_tokens, seed=1000 + i),
            response_schema=schema,
        )
        for i in range(rows)
    ]
    prompts = [local.prompt_ids(r) for r in requests]
    input_ids, attention = local.left_padded(prompts)
    width, pad = input_ids.shape[1], local.tokenizer.pad_token_id
    processors = repetition_penalty(1.1, width)
    if schema is not None:
        grammar = local._grammar(schema)
        processors.append(xgr.contrib.hf.LogitsProcessor(grammar) if baseline else GrammarMask(grammar, rows))
    if temperature > 0:
        processors.append(RowSampler([r.sampling.seed for r in requests], temperature, 0.95))
    eos = local._eos_ids()
    start = time.perf_counter()
    with torch.inference_mode(), local.using() as model:
        if baseline:
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max_tokens,
                pad_token_id=pad,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                logits_processor=processors,
            )
            made = output[:, width:].tolist()
        else:
            made = decode(model, input_ids, attention, max_tokens, eos, processors)
    seconds = time.perf_counter() - start
    cut = []
    for row in made:
        stop = next((i for i, token in enumerate(row) if token in eos), None)
        cut.append(row if stop is None else row[: stop + 1])
    return cut, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=160)
    args = parser.parse_args()
    local = TransformersBackend(BackendConfig()).local_model()
    run(local, 2, 4, 0.0, None, baseline=True)  # warm-up
    print(f"embedded model, {torch.get_num_threads()} threads, batch of {args.rows}, max_tokens {args.max_tokens}")
    print("| workload | generate (baseline) | decode | speed-up | identical rows | tokens: mean / max |")
    print("|---|---|---|---|---|---|")
    for name, temperature, schema in WORKLOADS:
        reference, base_s = run(local, args.rows, args.max_tokens, temperature, schema, baseline=True)
        rows, new_s = run(local, args.rows, args.max_tokens, temperature, schema, baseline=False)
        same = sum(a == b for a, b in zip(reference, rows, strict=True))
        lengths = [len(row) for row in rows]
        print(
            f"| {name} | {base_s:.1f} s | {new_s:.1f} s | {base_s / new_s:.2f}× | {same}/{len(rows)} |"
            f" {sum(lengths) / len(lengths):.0f} / {max(lengths)} |"
        )


if __name__ == "__main__":
    main()
