"""How close does the engine come to the ideal when a server is slow, and how fast is local generation?

Part 1 — orchestration: N distinct requests through the real engine (SQLite cache, retries, the
aiohttp backend) against a local OpenAI-compatible server (its own process) that answers after a
fixed latency. Prints wall time, the ideal N × latency / concurrency, their ratio, and the client's
CPU seconds per request; a bare aiohttp + semaphore loop runs in the same session as a baseline.

Part 2 — local generation: the transformers backend's tokens/s against a plain `model.generate`
on the same prompts at the same batch size: greedy (both produce the same tokens), and sampled
(the backend's per-request sampler against transformers' own sampling).

    python bench/orchestration.py                    # defaults: 2000 requests, 200 ms, 64 and 256
    python bench/orchestration.py --requests 5000 --skip-local
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from opencharacter.backends import build_backend
from opencharacter.config import BackendConfig
from opencharacter.engine import Engine
from opencharacter.records import ChatMessage, ChatRequest, Sampling
from opencharacter.store import RunStore

SERVER = """
import sys
from opencharacter.server import ScriptedResponder, run_server
run_server(ScriptedResponder(latency=float(sys.argv[1])), "127.0.0.1", int(sys.argv[2]), "bench")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(latency), str(port)])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("bench server did not start")


def requests(count: int, tag: str) -> list[ChatRequest]:
    sampling = Sampling(temperature=0.0, max_tokens=32)
    return [
        ChatRequest(messages=[ChatMessage(role="user", content=f"{tag} request {i}")], sampling=sampling)
        for i in range(count)
    ]


async def through_engine(url: str, count: int, concurrency: int, store_dir: Path) -> None:
    backend = build_backend(BackendConfig(backend="openai", base_url=url, model="bench", concurrency=concurrency))
    engine = Engine(backend, RunStore(store_dir), concurrency=concurrency)
    try:
        await asyncio.gather(*(engine.generate(r, prompt_id="bench@v1") for r in requests(count, store_dir.name)))
    finally:
        await backend.aclose()
        engine.store.close()


async def bare_aiohttp(url: str, count: int, concurrency: int) -> None:
    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            body = {
                "model": "bench",
                "messages": [{"role": "user", "content": f"bare {i}"}],
                "max_tokens": 32,
            }
            async with semaphore, session.post(f"{url}/chat/completions", json=body) as response:
                json.loads(await response.read())

        await asyncio.gather(*(one(i) for i in range(count)))


def measure(run) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(run())
    return time.perf_counter() - wall, time.process_time() - cpu


def orchestration(count: int, latency: float, levels: list[int], repeats: int) -> None:
    process, url = start_server(latency)
    try:
        print(f"\n## Orchestration: {count} requests, server latency {latency * 1000:.0f} ms, median of {repeats}")
        print(f"{'client':<14}{'conc.':>6}{'wall s':>9}{'ideal s':>9}{'ratio':>8}{'CPU ms/req':>12}")
        with tempfile.TemporaryDirectory() as tmp:
            for concurrency in levels:
                ideal = count * latency / concurrency
                for name in ("bare aiohttp", "engine"):
                    walls, cpus = [], []
                    for repeat in range(repeats):
                        store = Path(tmp) / f"c{concurrency}-r{repeat}"
                        if name == "engine":
                            wall, cpu = measure(functools.partial(through_engine, url, count, concurrency, store))
                        else:
                            wall, cpu = measure(functools.partial(bare_aiohttp, url, count, concurrency))
                        walls.append(wall)
                        cpus.append(cpu)
                    wall, cpu = statistics.median(walls), statistics.median(cpus)
                    print(
                        f"{name:<14}{concurrency:>6}{wall:>9.2f}{ideal:>9.2f}{wall / ideal:>8.2f}"
                        f"{cpu / count * 1000:>12.3f}"
                    )
    finally:
        process.terminate()
        process.wait(10)


def local_generation(batch_size: int, batches: int, max_tokens: int, temperature: float) -> None:
    import torch

    backend = build_backend(BackendConfig(backend="transformers", model="embedded", batch_size=batch_size))
    local = backend.local_model()
    topics = ["the sea", "bread", "chess", "rain", "trains", "bees", "maps", "clocks"]
    prompts = [
        ChatRequest(
            messages=[ChatMessage(role="user", content=f"Write a short paragraph about {topics[i % 8]} ({i}).")],
            sampling=Sampling(temperature=temperature, max_tokens=max_tokens, repetition_penalty=1.0),
        )
        for i in range(batch_size * batches)
    ]

    async def via_backend() -> int:
        done = await asyncio.gather(*(backend.complete(r) for r in prompts))
        return sum(c.completion_tokens for c in done)

    # Warm-up, then the backend, then the plain loop on the same batches.
    asyncio.run(backend.complete(prompts[0]))
    start = time.perf_counter()
    backend_tokens = asyncio.run(via_backend())
    backend_wall = time.perf_counter() - start

    tokenizer, model = local.tokenizer, local.model
    eos = tokenizer.eos_token_id
    plain_tokens, start = 0, time.perf_counter()
    for b in range(batches):
        chunk = prompts[b * batch_size : (b + 1) * batch_size]
        texts = [
            tokenizer.apply_chat_template(
                [m.model_dump() for m in r.messages], tokenize=False, add_generation_prompt=True
            )
            for r in chunk
        ]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            sampling = (
                {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature else {"do_sample": False}
            )
            output = model.generate(**encoded, max_new_tokens=max_tokens, pad_token_id=eos, **sampling)
        for row in output[:, encoded["input_ids"].shape[1] :].tolist():
            plain_tokens += next((i + 1 for i, t in enumerate(row) if t == eos), len(row))
    plain_wall = time.perf_counter() - start
    mode = f"sampled at temperature {temperature}" if temperature else "greedy"
    print(
        f"\n## Local generation: embedded model, batch {batch_size}, {batches} batches, {max_tokens} new tokens, {mode}"
    )
    print(f"{'path':<22}{'tokens':>8}{'wall s':>9}{'tok/s':>9}")
    print(f"{'plain model.generate':<22}{plain_tokens:>8}{plain_wall:>9.2f}{plain_tokens / plain_wall:>9.1f}")
    print(f"{'transformers backend':<22}{backend_tokens:>8}{backend_wall:>9.2f}{backend_tokens / backend_wall:>9.1f}")
    ratio = (backend_tokens / backend_wall) / (plain_tokens / plain_wall)
    print(f"backend / plain throughput: {ratio:.2f}x (target >= 0.9)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, nargs="+", default=[0.0, 0.7], help="0 = greedy")
    args = parser.parse_args()
    orchestration(args.requests, args.latency, args.concurrency, args.repeats)
    if not args.skip_local:
        for temperature in args.temperature:
            local_generation(args.batch_size, args.batches, args.max_tokens, temperature)


if __name__ == "__main__":
    main()
