"""How close does the client come to a capped server's ideal, and does any item fail on 429s?

A local OpenAI-compatible server (its own process) serves at most SLOTS requests at once, each
after a fixed latency, and answers 429 (no Retry-After) beyond that: a rate-limited API or a full
vLLM queue. N distinct requests go through the real engine at `--concurrency` (128 by default).
Ideal = N × latency / SLOTS. Printed per slot count: wall time, ratio to the ideal, items failed,
429s the server sent, engine retries spent, client CPU ms per request; with AIMD on and off, and a
reference client fixed at exactly the server's slots (what the machine itself allows).

    python bench/rate_control.py                       # 16 and 4 slots, 1500 requests, 50 ms
    python bench/rate_control.py --slots 16 --requests 3000 --latency 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from opencharacter.backends import build_backend
from opencharacter.config import BackendConfig
from opencharacter.engine import Engine
from opencharacter.errors import BackendError
from opencharacter.records import ChatMessage, ChatRequest, Sampling
from opencharacter.store import RunStore

SERVER = """
import sys
from aiohttp import web
from opencharacter.serve.server import ScriptedResponder, build_app

responder = ScriptedResponder(latency=float(sys.argv[1]), slots=int(sys.argv[2]))
app = build_app(responder, "bench")

async def counts(_):
    return web.json_response({"rejected": responder.rejected, "peak": responder.peak_in_flight})

app.router.add_get("/counts", counts)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[3]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(latency: float, slots: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(latency), str(slots), str(port)])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("bench server did not start")


def server_counts(root: str) -> dict:
    with urllib.request.urlopen(f"{root}/counts") as response:
        return json.loads(response.read())


async def drive(url: str, count: int, concurrency: int, adaptive: bool, store: Path, tag: str) -> tuple[int, int]:
    config = BackendConfig(
        backend="openai", base_url=url, model="bench", concurrency=concurrency, adaptive_concurrency=adaptive
    )
    backend = build_backend(config)
    engine = Engine(backend, RunStore(store), concurrency=concurrency, max_retries=config.max_retries)
    sampling = Sampling(temperature=0.0, max_tokens=16)
    requests = [
        ChatRequest(messages=[ChatMessage(role="user", content=f"{tag} {i}")], sampling=sampling) for i in range(count)
    ]
    try:
        results = await asyncio.gather(
            *(engine.generate(r, prompt_id="bench@v1") for r in requests), return_exceptions=True
        )
    finally:
        await backend.aclose()
        engine.store.close()
    failed = sum(isinstance(r, BackendError) for r in results)
    others = [r for r in results if isinstance(r, BaseException) and not isinstance(r, BackendError)]
    if others:
        raise others[0]
    return failed, engine.stats.retries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, nargs="+", default=[16, 4])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=128)
    args = parser.parse_args()
    print(
        f"\n## Rate control: {args.requests} requests, latency {args.latency * 1000:.0f} ms, "
        f"--concurrency {args.concurrency}, server answers 429 beyond its slots"
    )
    print(
        f"{'slots':>5}{'conc.':>6}{'AIMD':>6}{'wall s':>9}{'ideal s':>9}{'ratio':>7}{'failed':>8}{'429s':>7}"
        f"{'retries':>9}{'peak':>6}{'CPU ms/req':>12}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for slots in args.slots:
            # The last row is the reference: a client fixed at exactly the server's slots (never
            # rejected), i.e. what this machine can do; compare the AIMD row with it, not only the ideal.
            for adaptive, concurrency in ((True, args.concurrency), (False, args.concurrency), (False, slots)):
                process, root = start_server(args.latency, slots)
                try:
                    before = server_counts(root)
                    wall, cpu = time.perf_counter(), time.process_time()
                    tag = f"s{slots}-{adaptive}-{concurrency}"
                    failed, retries = asyncio.run(
                        drive(f"{root}/v1", args.requests, concurrency, adaptive, Path(tmp) / tag, tag)
                    )
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    after = server_counts(root)
                finally:
                    process.terminate()
                    process.wait(10)
                ideal = args.requests * args.latency / slots
                rejected = after["rejected"] - before["rejected"]
                print(
                    f"{slots:>5}{concurrency:>6}{'on' if adaptive else 'off':>6}{wall:>9.2f}{ideal:>9.2f}"
                    f"{wall / ideal:>7.2f}{failed:>8}{rejected:>7}{retries:>9}{after['peak']:>6}"
                    f"{cpu / args.requests * 1000:>12.2f}"
                )


if __name__ == "__main__":
    main()
