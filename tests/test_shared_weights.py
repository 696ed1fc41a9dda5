"""Local models over one base share its weights: one copy in memory, the same tokens as loaded alone."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from opencharacter.backends.transformers_local import TransformersBackend  # noqa: E402
from opencharacter.config import BackendConfig  # noqa: E402
from opencharacter.records import ChatMessage, ChatRequest, Sampling  # noqa: E402

QUESTIONS = ("What is your favourite season?", "Describe your morning.")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A LoRA adapter over the embedded model whose weights are not zero, so it changes the answers."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from opencharacter.models.embedded import EMBEDDED_NAME, embedded_model_dir

    torch.manual_seed(0)
    base_dir = embedded_model_dir()
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, lora).save_pretrained(out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)
    (out / "opencharacter.json").write_text(json.dumps({"base_model": EMBEDDED_NAME}), encoding="utf-8")
    return str(out)


def greedy(local):
    requests = [
        ChatRequest(messages=[ChatMessage(role="user", content=q)], sampling=Sampling(temperature=0.0, max_tokens=12))
        for q in QUESTIONS
    ]
    return [c.text for c in local.generate(requests, [local.prompt_ids(r) for r in requests])]


def test_base_tuned_and_judge_share_one_copy_of_the_base_and_answer_as_if_loaded_alone(adapter):
    from opencharacter.models.loading import load_model_and_tokenizer

    base = TransformersBackend(BackendConfig()).local_model()
    before = greedy(base)
    tuned = TransformersBackend(BackendConfig(model=adapter)).local_model()
    judge = TransformersBackend(BackendConfig(concurrency=2)).local_model()  # another config, the same weights

    assert tuned._weights is base._weights is judge._weights
    embedding = base.model.get_input_embeddings().weight
    assert tuned.model.get_input_embeddings().weight.data_ptr() == embedding.data_ptr()

    tuned_answers = greedy(tuned)
    assert greedy(base) == before == greedy(judge)  # the adapter is off for the base...
    assert tuned_answers != before  # ...and on for the student

    # The student's logits are those of the same adapter loaded alone, for the same inputs.
    alone, _ = load_model_and_tokenizer(adapter, "cpu")
    requests = [ChatRequest(messages=[ChatMessage(role="user", content=q)], sampling=Sampling()) for q in QUESTIONS]
    input_ids, attention = tuned.left_padded([tuned.prompt_ids(r) for r in requests])
    with torch.inference_mode():
        expected = alone(input_ids=input_ids, attention_mask=attention).logits
        with tuned.using() as model:
            shared = model(input_ids=input_ids, attention_mask=attention).logits
        with base.using() as model:
            plain = model(input_ids=input_ids, attention_mask=attention).logits
    assert torch.allclose(shared, expected, atol=1e-5)
    assert not torch.allclose(plain, expected, atol=1e-2)


def test_the_weights_go_when_no_model_holds_them(tmp_path):
    """A tiny model of its own (no other test holds it): the weak table lets its weights go."""
    import gc
    import weakref

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from opencharacter.models.embedded import embedded_model_dir

    config = AutoConfig.from_pretrained(embedded_model_dir())
    config.update(
        {
            "num_hidden_layers": 1,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
        }
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(embedded_model_dir()).save_pretrained(tmp_path)

    local = TransformersBackend(BackendConfig(model=str(tmp_path))).local_model()
    held = weakref.ref(local._weights)
    assert TransformersBackend(BackendConfig(model=str(tmp_path))).local_model()._weights is held()
    del local
    gc.collect()
    assert held() is None
