"""vLLM request building, testable without vLLM or a GPU (the GPU path is checked on a lent machine)."""

from __future__ import annotations

import importlib.util

import pytest

from opencharacter.backends import build_backend
from opencharacter.backends.vllm_offline import engine_kwargs, sampling_kwargs
from opencharacter.config import BackendConfig
from opencharacter.errors import MissingDependencyError
from opencharacter.records import ChatMessage, ChatRequest, Sampling
from opencharacter.stages.dialogues import rewrite_schema


def test_sampling_and_structured_outputs():
    request = ChatRequest(
        messages=[ChatMessage(role="user", content="hi")],
        sampling=Sampling(temperature=0.3, top_p=0.9, max_tokens=99, seed=5),
        response_schema=rewrite_schema(2),
    )
    kwargs = sampling_kwargs(request)
    assert kwargs == {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 99,
        "repetition_penalty": 1.1,
        "seed": 5,
        "structured_outputs": {"json": rewrite_schema(2)},
    }
    assert "structured_outputs" not in sampling_kwargs(request.model_copy(update={"response_schema": None}))


def test_engine_arguments_pass_options_through():
    config = BackendConfig(
        backend="vllm",
        model="meta-llama/Meta-Llama-3-8B-Instruct",
        options={"tensor_parallel_size": 2, "max_model_len": 4096},
    )
    assert engine_kwargs(config) == {
        "model": "meta-llama/Meta-Llama-3-8B-Instruct",
        "seed": 0,
        "tensor_parallel_size": 2,
        "max_model_len": 4096,
    }


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_missing_vllm_says_which_extra_to_install():
    with pytest.raises(MissingDependencyError) as caught:
        build_backend(BackendConfig(backend="vllm"))
    assert str(caught.value) == "vllm is not installed; run: pip install 'opencharacter[vllm]'"
