"""Loss on assistant tokens only: system and user tokens get label −100, assistant tokens keep theirs."""

from __future__ import annotations

import pytest

from opencharacter.errors import ConfigError
from opencharacter.train.masking import IGNORE, tokenize_conversation

LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Marks the final message differently: rendering a prefix is not a prefix of the whole.
NOT_PREFIX_PRESERVING = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}"
    "{% if loop.last %} [END]{% endif %}\n{% endfor %}"
)
MESSAGES = [
    {"role": "system", "content": "You are Ines, a lighthouse keeper."},
    {"role": "user", "content": "What do you do all day?"},
    {"role": "assistant", "content": "I wind the clocks and watch the sea."},
    {"role": "user", "content": "Is it lonely?"},
    {"role": "assistant", "content": "Never, the gulls talk back."},
]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from opencharacter.models.loading import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("embedded"))


def labelled_text(tokenizer, tokenized):
    return tokenizer.decode(
        [t for t, label in zip(tokenized.input_ids, tokenized.labels, strict=True) if label != IGNORE]
    )


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_only_assistant_turns_and_their_end_token_carry_loss(tokenizer, template):
    if template == "llama3":
        tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
        tokenizer.chat_template = LLAMA3
        end = "<|eot_id|>"
    else:
        end = "<|im_end|>"
    tokenized = tokenize_conversation(tokenizer, MESSAGES, max_length=4096)
    learned = labelled_text(tokenizer, tokenized)
    assert "I wind the clocks and watch the sea." in learned and "Never, the gulls talk back." in learned
    assert "lighthouse keeper" not in learned and "What do you do" not in learned and "lonely" not in learned
    assert learned.count(end) == 2 if template == "chatml" else "eot_id" in learned
    masked = [t for t, label in zip(tokenized.input_ids, tokenized.labels, strict=True) if label == IGNORE]
    assert "lighthouse keeper" in tokenizer.decode(masked) and "Is it lonely?" in tokenizer.decode(masked)
    assert all(label in (IGNORE, token) for token, label in zip(tokenized.input_ids, tokenized.labels, strict=True))
    assert not tokenized.truncated


def test_chatml_end_of_turn_token_is_learned(tokenizer):
    tokenized = tokenize_conversation(tokenizer, MESSAGES, max_length=4096)
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ends = [label for token, label in zip(tokenized.input_ids, tokenized.labels, strict=True) if token == end_id]
    assert ends.count(end_id) == 2 and ends.count(IGNORE) == 3  # system and user ends are masked


def test_truncation_is_reported(tokenizer):
    tokenized = tokenize_conversation(tokenizer, MESSAGES, max_length=20)
    assert tokenized.truncated and len(tokenized.input_ids) == len(tokenized.labels) == 20


def test_a_template_we_cannot_mask_is_a_clear_error(tokenizer):
    odd = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    odd.chat_template = NOT_PREFIX_PRESERVING
    with pytest.raises(ConfigError, match="not prefix-preserving"):
        tokenize_conversation(odd, MESSAGES, max_length=4096)
