"""PersonaGym's requests and parsing, as the authors' fork (`code/run.py`) builds and reads them.

Request text is made by the reference's own string operations on the checkout's templates:
`str.format` of the raw files, and the rubrics inserted as a Python list's text
(`prompt.format(rubrics=[...])` writes `str(list)`, i.e. each item's `repr`). The parsing functions
are the reference's regular expressions; an unparsable verdict scores 0, and the modified average
leaves zeros out (all zeros, or nothing parsed: 0).
"""

from __future__ import annotations

import re

from opencharacter.errors import InputError
from opencharacter.eval.personagym.checkout import Checkout
from opencharacter.records import ChatMessage

_EXAMPLE = re.compile(r'Score (\d+): *Response - *"?(.*?)"?(?=\n*Score \d+: *Response -|$)', re.S)
_EVALUATION = re.compile(r"\(\d+\) Evaluation:(.*?)(?=\(\d+\) Evaluation:|$)", re.DOTALL)
_FINAL = re.compile(r"Therefore, the final score is\s*(\d+)")


def _format(template: str, where: str, **slots: object) -> str:
    try:
        return template.format(**slots)
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(where, None, f"template does not format with {sorted(slots)}: {exc!r}") from None


def answer_messages(checkout: Checkout, style: str, persona: str, question: str) -> list[ChatMessage]:
    """`bare`: the API route's persona prompt; `student`: the OpenCharacter route's system prompt."""
    template = checkout.bare_prompt if style == "bare" else checkout.student_prompt
    if template is None:
        route = "openai_chat_gen's persona_prompt" if style == "bare" else "the open_character route's sys_prompt"
        raise InputError(str(checkout.root / "code/utils.py"), None, f"cannot find {route} (--system-prompt {style})")
    return [
        ChatMessage(role="system", content=template.render(persona)),
        ChatMessage(role="user", content=question),
    ]


def example_messages(checkout: Checkout, persona: str, question: str, task: str) -> list[ChatMessage]:
    """One question's score-example call (the fork's `gen_score_examples_non_parallel`): the raw rubric
    goes into the example prompt, which goes, as a one-item list, into the examples template."""
    rubric = checkout.rubric(task)
    prompt = _format(
        checkout.example_prompt, "prompts/score_examples/prompt.txt", persona=persona, question=question, rubric=rubric
    )
    text = _format(checkout.examples_template, checkout.examples_file, rubrics=[prompt])
    return [ChatMessage(role="user", content=text)]


def process_examples(text: str) -> str:
    """The reference's `process_examples`: the 'Score N: Response - …' entries, one paragraph each."""
    processed = "\n\n".join(f'Score {score}: "{response.strip()}"' for score, response in _EXAMPLE.findall(text))
    return "\n\n".join(line for line in processed.split("\n") if line.startswith("Score"))


def judge_messages(
    checkout: Checkout, persona: str, task: str, batch: list[tuple[str, str]], examples: list[str]
) -> list[ChatMessage]:
    """One verdict call for up to five (question, answer) pairs of one task (the fork's `format_rubrics`)."""
    rubric = checkout.rubric(task)
    filled = [
        _format(
            rubric, f"rubrics/{task}.txt", persona=persona, question=question, response=answer, score_example=example
        )
        for (question, answer), example in zip(batch, examples, strict=True)
    ]
    return [
        ChatMessage(role="system", content=checkout.judge_system),
        ChatMessage(
            role="user", content=_format(checkout.judge_prompt, "prompts/rubric_grading/prompt.txt", rubrics=filled)
        ),
    ]


def parse_scores(text: str) -> list[int]:
    """Each '(n) Evaluation:' segment's 'Therefore, the final score is N', 0 where it has none."""
    scores = []
    for segment in _EVALUATION.findall(text):
        match = _FINAL.search(segment.strip())
        scores.append(int(match.group(1)) if match else 0)
    return scores


def modified_average(scores: list[int]) -> float:
    """The reference's `calculate_modified_average`: the mean of the non-zero scores (0 when none)."""
    counted = len(scores) - scores.count(0)
    total = sum(scores)
    return total / counted if counted > 0 else total


__all__ = [
    "answer_messages",
    "example_messages",
    "judge_messages",
    "modified_average",
    "parse_scores",
    "process_examples",
]
