"""CUDA smoke check of the local paths, with random weights and no download.

    python bench/cuda_check.py --model-files DIR --dialogues D.jsonl [--preferences P.jsonl] [--out OUT]

DIR holds a model's config and tokenizer files (no weights): the check builds a random-weight model of
that architecture, then exercises on the GPU what users run there with the transformers backend and
`train`: batched generation with and without a JSON schema (xgrammar), LoRA SFT, and DPO from the SFT
adapter. Random weights make the text meaningless; what is checked is that each path runs on CUDA,
what it costs (tokens/s, steps/s, peak GPU memory), and that the outputs land and load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def random_model(files: Path, target: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shutil.copytree(files, target, dirs_exist_ok=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(files))
    model.save_pretrained(target)
    return target


async def generation(model: Path, requests: int) -> dict[str, float]:
    import torch

    from opencharacter.backends import build_backend
    from opencharacter.config import BackendConfig
    from opencharacter.records import ChatMessage, ChatRequest, Sampling

    backend = build_backend(BackendConfig(backend="transformers", model=str(model), batch_size=32, device="auto"))
    sampling = Sampling(temperature=0.7, max_tokens=64)
    results: dict[str, float] = {}
    for label, schema in (("free text", None), ("json schema", _SCHEMA)):
        batch = [
            ChatRequest(
                messages=[ChatMessage(role="user", content=f"Describe character number {i}.")],
                sampling=sampling,
                response_schema=schema,
            )
            for i in range(requests)
        ]
        _sync()
        start = time.perf_counter()
        completions = await asyncio.gather(*(backend.complete(r) for r in batch))
        _sync()
        seconds = time.perf_counter() - start
        tokens = sum(c.completion_tokens for c in completions)
        if schema is not None:
            valid = sum(_valid_json(c.text) for c in completions)
            results[f"{label}: valid JSON"] = valid / len(completions)
        results[f"{label}: tokens/s"] = tokens / seconds
        print(f"generation ({label}): {len(completions)} requests, {tokens} tokens in {seconds:.1f} s", flush=True)
    if torch.cuda.is_available():
        results["peak GPU GiB"] = torch.cuda.max_memory_allocated() / 2**30
    return results


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def embedding(files: Path, target: Path, texts: int) -> dict[str, float]:
    """Answers/s of the selection's embedder (MiniLM-shaped, random weights) on the GPU and on the CPU."""
    import torch
    from transformers import AutoConfig, AutoModel

    from opencharacter.models.embedder import Embedder

    shutil.copytree(files, target, dirs_exist_ok=True)
    AutoModel.from_config(AutoConfig.from_pretrained(files)).save_pretrained(target)
    words = [
        "the",
        "lighthouse",
        "keeper",
        "restores",
        "antique",
        "clocks",
        "on",
        "the",
        "coast",
        "and",
        "tells",
        "stories",
        "of",
        "storms",
    ]
    corpus = [" ".join(words[(i + j) % len(words)] for j in range(80)) for i in range(texts)]
    results: dict[str, float] = {}
    for device, count in (("cuda", texts), ("cpu", max(1, texts // 20))):
        if device == "cuda" and not torch.cuda.is_available():
            continue
        embed = Embedder(target, device=device)
        embed(corpus[:64])  # warm-up
        _sync()
        start = time.perf_counter()
        embed(corpus[:count])
        _sync()
        results[f"{device}: answers/s"] = count / (time.perf_counter() - start)
        print(f"embedding on {device}: {results[f'{device}: answers/s']:.0f} answers/s (80 words each)", flush=True)
    return results


def _valid_json(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and {"name", "age"} <= set(value)


def train(args: list[str], log: Path) -> float:
    command = [sys.executable, "-m", "opencharacter", "train", *args]
    print("$ opencharacter train " + " ".join(args), flush=True)
    start = time.perf_counter()
    with log.open("w") as stream:
        code = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, check=False).returncode
    print(log.read_text()[-3000:], flush=True)
    if code != 0:
        raise SystemExit(f"train exited {code}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-files", type=Path, required=True)
    parser.add_argument("--dialogues", type=Path, required=True)
    parser.add_argument("--preferences", type=Path)
    parser.add_argument("--embedder-files", type=Path, help="MiniLM config + tokenizer files (no weights).")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cuda-check"))
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cpu", action="store_true", help="Run without a GPU (to try the script itself).")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available() and not args.cpu:
        raise SystemExit("no CUDA device")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"device: {device}, torch {torch.__version__}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    model = random_model(args.model_files, args.work / "random-model")
    report: dict[str, object] = {"device": device}
    report["generation"] = asyncio.run(generation(model, args.requests))
    if args.embedder_files is not None:
        report["embedding"] = embedding(args.embedder_files, args.work / "random-embedder", 20000)
    if args.skip_train:
        (args.out / "cuda_check.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2), flush=True)
        return
    common = ["--model", str(model), "--max-steps", str(args.steps), "--batch-size", "8", "--max-length", "512"]
    sft = args.work / "sft"
    report["sft seconds"] = train(["--data", str(args.dialogues), "--out", str(sft), *common], args.out / "sft.log")
    report["sft files"] = sorted(p.name for p in sft.iterdir())
    if args.preferences is not None:
        dpo = args.work / "dpo"
        dpo_args = ["--method", "dpo", "--data", str(args.preferences), "--init-adapter", str(sft)]
        report["dpo seconds"] = train([*dpo_args, "--out", str(dpo), *common], args.out / "dpo.log")
        report["dpo files"] = sorted(p.name for p in dpo.iterdir())
    (args.out / "cuda_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2), flush=True)


if __name__ == "__main__":
    main()
