"""Tokenise a conversation so that only assistant tokens carry loss (labels −100 elsewhere).

Works for any chat template that is *prefix-preserving* — rendering the first k messages gives a
prefix of rendering all of them — which holds for ChatML (SmolLM, Qwen), LLaMA-3, Mistral and most
others. Each assistant span runs from the end of the generation prompt to the end of its turn, so
the end-of-turn token is learned too (the model learns to stop). A template that is not
prefix-preserving cannot be masked this way and gets a clear error instead of silent full-sequence loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opencharacter.errors import ConfigError

IGNORE = -100


@dataclass(frozen=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]
    truncated: bool


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each assistant turn."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
        if not (text.startswith(before) and text.startswith(through) and through.startswith(before)):
            name = getattr(tokenizer, "name_or_path", "this tokenizer")
            raise ConfigError(
                f"cannot mask the chat template of {name}: it is not prefix-preserving, so assistant tokens "
                "cannot be located; use a model whose template is (ChatML, LLaMA-3, Mistral, …)"
            )
        if message["content"] not in through[len(before) :]:
            raise ConfigError("cannot mask the chat template: it rewrites assistant content")
        spans.append((len(before), len(through)))
    return text, spans


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, str]], max_length: int) -> Tokenized:
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    labels = []
    for token, (start, end) in zip(ids, offsets, strict=True):
        inside = any(span_start <= start and end <= span_end and end > start for span_start, span_end in spans)
        labels.append(token if inside else IGNORE)
    truncated = len(ids) > max_length
    return Tokenized(ids[:max_length], labels[:max_length], truncated)
