"""How close does the engine come to the ideal when a server is slow, and how fast is local generation?

Part 1 — orchestration: N distinct requests through the real engine (SQLite cache, retries, the
aiohttp backend) against a local OpenAI-compatible server (its own process) that answers after a
fixed latency. Prints wall time, the ideal N × latency / concurrency, their ratio, and the client's
CPU seconds per request; a bare aiohttp + semaphore loop runs in the same session as a baseline.

Part 2 — local generation: the transformers backend's tokens/s against a plain `model.generate`
on the same prompts at the same batch size, interleaved in one process: greedy (both produce the
same tokens), and sampled (the backend's per-request sampler against transformers' own sampling).

    python bench/orchestration.py                    # defaults: 2000 requests, 200 ms, 64 and 256
    python bench/orchestration.py --requests 5000 --skip-local
    python bench/orchestration.py --skip-orchestration --batch-size 16 64 --threads 1
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
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
from opencharacter.serve.server import ScriptedResponder, run_server
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


def _prompts(count: int, temperature: float, max_tokens: int) -> list[ChatRequest]:
    topics = ["the sea", "bread", "chess", "rain", "trains", "bees", "maps", "clocks"]
    return [
        ChatRequest(
            messages=[ChatMessage(role="user", content=f"Write a short paragraph about {topics[i % 8]} ({i}).")],
            # Seeded as the engine seeds every call; top_p as plain generate's below.
            sampling=Sampling(
                temperature=temperature, top_p=0.95, max_tokens=max_tokens, repetition_penalty=1.0, seed=i
            ),
        )
        for i in range(count)
    ]


def _timed(run) -> tuple[int, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    tokens = run()
    return tokens, time.perf_counter() - wall, time.process_time() - cpu


def local_generation(batch_size: int, batches: int, max_tokens: int, temperature: float, repeats: int) -> None:
    """The backend and a plain `model.generate` loop on the same prompts, interleaved, `repeats` times.

    Interleaving (and alternating which goes first) spreads the load of a shared machine evenly
    over both; medians of wall time and of this process's CPU time are reported.
    """
    import torch

    backend = build_backend(BackendConfig(backend="transformers", model="embedded", batch_size=batch_size))
    local = backend.local_model()
    tokenizer, model = local.tokenizer, local.model
    eos = tokenizer.eos_token_id
    prompts = _prompts(batch_size * batches, temperature, max_tokens)

    def via_backend() -> int:
        async def run() -> int:
            done = await asyncio.gather(*(backend.complete(r) for r in prompts))
            return sum(c.completion_tokens for c in done)

        return asyncio.run(run())

    def plain() -> int:
        torch.manual_seed(0)
        tokens = 0
        for b in range(batches):
            chunk = prompts[b * batch_size : (b + 1) * batch_size]
            texts = [
                tokenizer.apply_chat_template(
                    [m.model_dump() for m in r.messages], tokenize=False, add_generation_prompt=True
                )
                for r in chunk
            ]
            encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            sampling = (
                {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature else {"do_sample": False}
            )
            with torch.inference_mode():
                output = model.generate(**encoded, max_new_tokens=max_tokens, pad_token_id=eos, **sampling)
            for row in output[:, encoded["input_ids"].shape[1] :].tolist():
                tokens += next((i + 1 for i, t in enumerate(row) if t == eos), len(row))
        return tokens

    asyncio.run(backend.complete(prompts[0].model_copy(update={"sampling": Sampling(max_tokens=2)})))  # warm-up
    results: dict[str, list[tuple[int, float, float]]] = {"plain model.generate": [], "transformers backend": []}
    loads = [os.getloadavg()[0]]
    for repeat in range(repeats):
        order = [("plain model.generate", plain), ("transformers backend", via_backend)]
        for name, run in order if repeat % 2 == 0 else order[::-1]:
            results[name].append(_timed(run))
        loads.append(os.getloadavg()[0])
    mode = f"sampled (temperature {temperature}, top-p 0.95)" if temperature else "greedy"
    print(
        f"\n## Local generation: embedded model, batch {batch_size} x {batches}, {max_tokens} new tokens, {mode}, "
        f"{torch.get_num_threads()} torch thread(s), median of {repeats} interleaved runs"
    )
    print(f"load average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs")
    print(f"{'path':<22}{'tokens':>8}{'wall s':>9}{'tok/s':>9}{'CPU s':>9}{'tok/CPU s':>11}")
    rates = {}
    for name, runs in results.items():
        tokens = statistics.median(r[0] for r in runs)
        wall, cpu = statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs)
        rates[name] = (statistics.median(r[0] / r[1] for r in runs), statistics.median(r[0] / r[2] for r in runs))
        print(f"{name:<22}{tokens:>8.0f}{wall:>9.2f}{rates[name][0]:>9.1f}{cpu:>9.2f}{rates[name][1]:>11.1f}")
        print(f"{'':<4}each run, wall s: {' '.join(f'{r[1]:.1f}' for r in runs)}")
    by_wall = rates["transformers backend"][0] / rates["plain model.generate"][0]
    by_cpu = rates["transformers backend"][1] / rates["plain model.generate"][1]
    print(f"backend / plain throughput: {by_wall:.2f}x by wall time, {by_cpu:.2f}x by CPU time (target >= 0.9)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-orchestration", action="store_true")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--batches", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, nargs="+", default=[0.7, 0.0], help="0 = greedy")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if not args.skip_orchestration:
        orchestration(args.requests, args.latency, args.concurrency, args.repeats)
    if not args.skip_local:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        for batch_size in args.batch_size:
            for temperature in args.temperature:
                local_generation(batch_size, args.batches, args.max_tokens, temperature, args.repeats)


if __name__ == "__main__":
    main()
