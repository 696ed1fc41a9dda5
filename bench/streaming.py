"""Time to first token vs the whole answer: `opencharacter serve` streaming the embedded model.

Before real streaming, `stream: true` made the whole answer first and then cut it into chunks, so
a client saw its first token only when the last was made. Now `serve` sends each piece as the
decode loop makes it. This serves the embedded model on 127.0.0.1 and, in the same run, asks each
question streamed (first content event, last event) and unstreamed (the whole answer), alone and
then `--concurrent` at once (streams share the decode batch); it prints both times and the ratio.

    python bench/streaming.py                       # 4 questions, 96 tokens, then 4 at once
    python bench/streaming.py --max-tokens 200 --concurrent 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import aiohttp

from opencharacter.backends.transformers_local import TransformersBackend
from opencharacter.config import BackendConfig
from opencharacter.serve.server import BackendResponder, serve_in_thread

QUESTIONS = [
    "Tell me a long story about a lighthouse keeper.",
    "Describe your favourite city in detail.",
    "Explain how a sailing boat moves against the wind.",
    "Write a letter to a friend about your summer.",
]


async def streamed(session: aiohttp.ClientSession, url: str, question: str, max_tokens: int) -> tuple[float, float]:
    """(seconds to the first content piece, seconds to the end) of one streamed answer."""
    payload = {"messages": [{"role": "user", "content": question}], "max_tokens": max_tokens, "temperature": 0}
    started = time.perf_counter()
    first = None
    async with session.post(f"{url}/chat/completions", json={**payload, "stream": True}) as response:
        async for line in response.content:
            if first is None and line.startswith(b"data: {"):
                event = json.loads(line[6:])
                if event["choices"] and event["choices"][0]["delta"].get("content"):
                    first = time.perf_counter() - started
    return first if first is not None else float("nan"), time.perf_counter() - started


async def whole(session: aiohttp.ClientSession, url: str, question: str, max_tokens: int) -> float:
    payload = {"messages": [{"role": "user", "content": question}], "max_tokens": max_tokens, "temperature": 0}
    started = time.perf_counter()
    async with session.post(f"{url}/chat/completions", json=payload) as response:
        await response.read()
    return time.perf_counter() - started


async def measure(url: str, max_tokens: int, concurrent: int) -> None:
    async with aiohttp.ClientSession() as session:
        await whole(session, url, "Hi.", 4)  # load the model and warm up before timing
        print(f"{'question':<52} {'first token':>12} {'stream end':>11} {'unstreamed':>11} {'ratio':>7}")
        ratios = []
        for question in QUESTIONS:
            first, end = await streamed(session, url, question, max_tokens)
            full = await whole(session, url, question, max_tokens)
            ratios.append(full / first)
            print(f"{question[:50]:<52} {first:>11.3f}s {end:>10.3f}s {full:>10.3f}s {full / first:>6.1f}×")
        print(f"median: the first token comes {statistics.median(ratios):.1f}× sooner than the whole answer")
        questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(concurrent)]
        together = await asyncio.gather(*(streamed(session, url, q, max_tokens) for q in questions))
        firsts, ends = [t[0] for t in together], [t[1] for t in together]
        print(
            f"{concurrent} streams at once (one decode batch): first token median {statistics.median(firsts):.3f}s, "
            f"last answer done {max(ends):.3f}s, ratio {max(ends) / statistics.median(firsts):.1f}×"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--model", default="embedded")
    args = parser.parse_args()
    backend = TransformersBackend(BackendConfig(model=args.model, batch_size=max(1, args.concurrent)))
    with serve_in_thread(BackendResponder(backend)) as url:
        asyncio.run(measure(url, args.max_tokens, args.concurrent))


if __name__ == "__main__":
    main()
