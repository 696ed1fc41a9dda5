"""`export --format gguf` and `train --gguf`: a trained adapter merged and written as GGUF, read back by
transformers' GGUF reader (logits compared with the merged model) and, where installed, served by
llama.cpp (`llama-cpp-python`) and chatted with through its OpenAI API."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_hub import FakeHub
from release_files import write_release

from opencharacter.errors import ConfigError

CLI = str(Path(sys.executable).with_name("opencharacter"))
PROMPTS = [
    "Hello, my name is",
    "<|im_start|>system\nYou are Ines, a retired lighthouse keeper.<|im_end|>\n"
    "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n",
    "The sea at night is",
]


def test_other_architectures_and_bad_options_are_refused(tmp_path, run_cli):
    from tokenizers import Tokenizer, models
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from opencharacter.export.gguf import check_architecture

    class Qwen:
        model_type, architectures = "qwen2", ["Qwen2ForCausalLM"]

    with pytest.raises(ConfigError, match=r"writes llama-architecture models .* this one is Qwen2ForCausalLM"):
        check_architecture(Qwen())
    tiny = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_positions=16)).save_pretrained(tiny)
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE())).save_pretrained(tiny)
    code, _, err = run_cli("export", "--format", "gguf", "--model", tiny)
    assert code == 2 and "this one is GPT2LMHeadModel" in err and "convert_hf_to_gguf.py" in err
    assert not list(tiny.glob("**/*.gguf"))
    code, _, err = run_cli("export", "--format", "gguf")
    assert code == 2 and "--format gguf needs --model DIR" in err
    code, _, err = run_cli("export", "--format", "gguf", "--model", tiny, "--gguf-type", "q4_k")
    assert code == 2 and "choose one of f16, q8_0" in err
    code, _, err = run_cli("train", "--data", tmp_path, "--out", tmp_path / "m", "--gguf", "q2")
    assert code == 2 and "--gguf 'q2'" in err
    code, _, err = run_cli("train", "--data", tmp_path, "--out", tmp_path / "m", "--push-to-hub", "no-owner")
    assert code == 2 and "owner/name" in err


@pytest.mark.slow
def test_gguf_reads_back_with_the_merged_models_logits(trained, tmp_path, run_cli):
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from opencharacter.export.gguf import merged_model

    out = tmp_path / "gguf"
    types = ("--gguf-type", "f16", "--gguf-type", "q8_0")
    code, stdout, err = run_cli("export", "--format", "gguf", "--model", trained, *types, "--out", out)
    assert code == 0, err
    files = {kind: out / f"{trained.name}-{kind}.gguf" for kind in ("f16", "q8_0")}
    assert all(path.is_file() for path in files.values()) and stdout.count("wrote ") == 2
    merged, tokenizer, _ = merged_model(trained)
    for kind, path in files.items():
        back = AutoModelForCausalLM.from_pretrained(str(out), gguf_file=path.name, dtype=torch.float32).eval()
        back_tokenizer = AutoTokenizer.from_pretrained(str(out), gguf_file=path.name)
        for prompt in PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
            assert back_tokenizer(prompt, add_special_tokens=False)["input_ids"] == ids[0].tolist()
            with torch.no_grad():
                want, got = merged(ids).logits[0, -1], back(ids).logits[0, -1]
            assert int(got.argmax()) == int(want.argmax()), (kind, prompt)
            cosine = float(torch.nn.functional.cosine_similarity(want, got, dim=0))
            if kind == "f16":
                assert float((want - got).abs().max()) < 0.1, prompt
            else:
                assert cosine > 0.995 and float((want - got).abs().max()) < 1.5, prompt
    import gguf

    reader = gguf.GGUFReader(files["q8_0"])
    template = reader.fields["tokenizer.chat_template"]
    assert bytes(template.parts[template.data[0]]).decode() == tokenizer.chat_template
    assert {t.tensor_type.name for t in reader.tensors} == {"Q8_0", "F32"}
    assert np.all([t.name != "output.weight" for t in reader.tensors])  # tied embeddings: token_embd serves both


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_llama_cpp_serves_the_character(trained, tmp_path, run_cli):
    from openai import OpenAI

    assert run_cli("export", "--format", "gguf", "--model", trained, "--gguf-type", "q8_0", "--out", tmp_path)[0] == 0
    model = tmp_path / f"{trained.name}-q8_0.gguf"
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "1024", "--n_threads", "2", "--model_alias", "ines"],
        stdout=log, stderr=subprocess.STDOUT,  # a file: llama.cpp's logs would fill a pipe and stall it
    )  # fmt: skip
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=120)
        deadline = time.monotonic() + 120
        while True:
            try:
                assert [m.id for m in client.models.list()] == ["ines"]
                break
            except AssertionError:
                raise
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    print((tmp_path / "server.log").read_text()[-3000:])
                    raise
                time.sleep(0.5)
        reply = client.chat.completions.create(
            model="ines",
            messages=[
                {"role": "system", "content": "You are Ines Moreau, a retired lighthouse keeper who restores clocks."},
                {"role": "user", "content": "Who are you?"},
            ],
            max_tokens=24,
            temperature=0,
        )
        assert reply.choices[0].message.content.strip()
        assert reply.usage.prompt_tokens > 10  # the chat template from the GGUF framed the messages
    finally:
        server.terminate()
        server.wait(30)
        log.close()


@pytest.mark.slow
def test_released_files_to_a_published_student(tmp_path):
    """The paper's files → `import` → `train --gguf q8_0 --push-to-hub`: two commands, a real (short)
    training, the GGUF, and the model, its GGUF and card in a (stand-in) Hub repository."""
    release, run, out = write_release(tmp_path / "release"), tmp_path / "paper", tmp_path / "ines"
    with FakeHub() as hub:
        env = {**os.environ, **hub.env(tmp_path / "hf-home")}
        imported = subprocess.run(
            [CLI, "import", str(release), "--out", str(run), "-q"], env=env, capture_output=True, text=True
        )
        assert imported.returncode == 0, imported.stderr
        result = subprocess.run(
            [CLI, "train", "--run", str(run), "--out", str(out), "--max-steps", "2", "--batch-size", "2",
             "--max-length", "256", "--gguf", "q8_0", "--push-to-hub", "me/ines"],
            env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained 2 steps" in result.stderr + result.stdout
    repo = hub.repos["me/ines"]
    assert repo.private and repo.repo_type == "model"
    assert {"README.md", "adapter_model.safetensors", "adapter_config.json", "gguf/ines-q8_0.gguf"} <= set(repo.files)
    assert not any(name.startswith("checkpoints/") or name == "opencharacter.json" for name in repo.files)
    card = repo.files["README.md"].decode()
    assert "gguf/ines-q8_0.gguf" in card and "- xywang1/OpenCharacter" in card  # datasets: the release
