"""The license a card declares by default: the terms of the model whose outputs (or weights) it ships.

Synthetic data carries the teacher's terms, and a fine-tune its base model's, so without a
configured `license` the card names the one we know for the model, and `other` (with a pointer to
the provider's terms) for a model we do not know. The table is short on purpose: a wrong license
is worse than `other`.
"""

from __future__ import annotations

import re

# (pattern over the lower-cased model id, Hub license identifier); first match wins.
KNOWN_LICENSES: tuple[tuple[str, str], ...] = (
    (r"smollm", "apache-2.0"),
    (r"opencharacter-release", "apache-2.0"),
    (r"llama-?3\.3", "llama3.3"),
    (r"llama-?3\.2", "llama3.2"),
    (r"llama-?3\.1", "llama3.1"),
    (r"llama-?3", "llama3"),
    (r"llama-?2", "llama2"),
    (r"gemma", "gemma"),
    (r"qwen3", "apache-2.0"),
    (r"mistral-7b|mixtral-8x7b", "apache-2.0"),
    (r"phi-?[34]", "mit"),
    (r"olmo", "apache-2.0"),
)
UNKNOWN = "other"


def default_license(model: str | None) -> str:
    """The Hub license identifier for outputs or fine-tunes of `model`, `other` when unknown."""
    name = (model or "").lower()
    return next((license for pattern, license in KNOWN_LICENSES if re.search(pattern, name)), UNKNOWN)
