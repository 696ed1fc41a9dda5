"""`max_tokens` within the model's context: the prompt plus the answer must fit, as vLLM enforces.

Without a cap, `max_tokens: 10**12` asks the local backend to decode until end-of-sequence (or past
the positions the model knows) while holding its one model-wide lock. A request that cannot fit is
a 400 in vLLM's words, naming the numbers; one that names no `max_tokens` gets the default, or the
room left if that is less.
"""

from __future__ import annotations

from opencharacter.backends.base import TokenBudget
from opencharacter.records import ChatRequest
from opencharacter.serve.api import RequestRejected


def fit_to_context(request: ChatRequest, requested: int | None, budget: TokenBudget) -> ChatRequest:
    window, prompt = budget.context_window, budget.prompt_tokens
    room = window - prompt
    if room <= 0:
        raise RequestRejected(
            f"This model's maximum context length is {window} tokens. However, your messages resulted in "
            f"{prompt} tokens. Please reduce the length of the messages.",
            "messages",
        )
    if requested is not None and requested > room:
        raise RequestRejected(
            f"This model's maximum context length is {window} tokens. However, you requested {prompt + requested} "
            f"tokens ({prompt} in the messages, {requested} in the completion). Please reduce the length of the "
            "messages or completion.",
            "max_tokens",
        )
    if request.sampling.max_tokens <= room:
        return request
    sampling = request.sampling.model_copy(update={"max_tokens": room})
    return request.model_copy(update={"sampling": sampling})
