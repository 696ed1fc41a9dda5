"""A PersonaGym checkout, read at run time: its questions, rubrics, prompts and two system prompts.

Nothing of PersonaGym's text lives in this repository: the user clones PersonaGym (the authors'
OpenCharacter fork, or upstream) and names the folder. Files are read as the reference reads them
(`open(path).read()`: text mode, universal newlines), so `str.format` sees the same template.

Two prompts are not files in the checkout but string literals in its `code/utils.py`: the persona
prompt of the API route (`persona_prompt = f"Adopt the identity of {persona}. …"`) and the system
prompt of the OpenCharacter route (`sys_prompt = "…"; sys_prompt += f"…{persona}…"; …`). They are
read with `ast`, never executed: the checkout's code does not run here.
"""

from __future__ import annotations

import ast
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from opencharacter.errors import InputError

UTILS = "code/utils.py"
PERSONAS = "code/personas.py"
JUDGE_SYSTEM = "prompts/rubric_grading/sys_prompt.txt"
JUDGE_PROMPT = "prompts/rubric_grading/prompt.txt"
EXAMPLE_PROMPT = "prompts/score_examples/prompt.txt"
EXAMPLES = "prompts/score_examples/examples.txt"
"""The fork's one-rubric template for the per-question example call."""
PARALLEL_EXAMPLES = "prompts/score_examples/parallel_examples.txt"
"""Upstream has only this five-rubric template; used, with one rubric per call, when EXAMPLES is absent."""


@dataclass(frozen=True)
class Template:
    """One f-string's pieces: literal text, and None where the persona goes."""

    parts: tuple[str | None, ...]

    def render(self, persona: str) -> str:
        return "".join(persona if part is None else part for part in self.parts)


@dataclass
class Checkout:
    root: Path
    rubrics: dict[str, str]
    judge_system: str
    judge_prompt: str
    example_prompt: str
    examples_template: str
    examples_file: str
    bare_prompt: Template | None
    student_prompt: Template | None
    personas: list[str] | None = None
    """`benchmark_personas` of code/personas.py, in its order (None without that file)."""
    commit: str | None = None

    def rubric(self, task: str) -> str:
        if task not in self.rubrics:
            raise InputError(str(self.root / "rubrics"), None, f"no rubric for the task {task!r} ({task}.txt)")
        return self.rubrics[task]


def _read(root: Path, relative: str) -> str:
    path = root / relative
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), None, "missing: is this a PersonaGym checkout?") from None
    except UnicodeDecodeError:
        raise InputError(str(path), None, "not valid UTF-8") from None


def load_checkout(path: str | Path) -> Checkout:
    root = Path(path)
    if not root.is_dir():
        raise InputError(str(root), None, "not a folder: clone PersonaGym and give its path")
    rubric_dir = root / "rubrics"
    rubrics = {p.stem: _read(root, f"rubrics/{p.name}") for p in sorted(rubric_dir.glob("*.txt"))}
    if not rubrics:
        raise InputError(str(rubric_dir), None, "no <task>.txt rubrics: is this a PersonaGym checkout?")
    examples_file = EXAMPLES if (root / EXAMPLES).is_file() else PARALLEL_EXAMPLES
    bare = student = None
    utils = root / UTILS
    if utils.is_file():
        tree = _parse(utils)
        bare = _fstring(tree, utils, "openai_chat_gen", "persona_prompt")
        student = _fstring(tree, utils, "open_character", "sys_prompt")
    return Checkout(
        root=root,
        rubrics=rubrics,
        judge_system=_read(root, JUDGE_SYSTEM),
        judge_prompt=_read(root, JUDGE_PROMPT),
        example_prompt=_read(root, EXAMPLE_PROMPT),
        examples_template=_read(root, examples_file),
        examples_file=examples_file,
        bare_prompt=bare,
        student_prompt=student,
        personas=_benchmark_personas(root / PERSONAS),
        commit=git_commit(root),
    )


def git_commit(root: Path) -> str | None:
    """HEAD's commit when the checkout is a git work tree (None otherwise, or without git)."""
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def _parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise InputError(str(path), exc.lineno, f"cannot be parsed: {exc.msg}") from None


def _benchmark_personas(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    for node in _parse(path).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "benchmark_personas" for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                raise InputError(str(path), node.lineno, "benchmark_personas is not a literal list") from None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InputError(str(path), node.lineno, "benchmark_personas must be a list of strings")
            return value
    return None


def _fstring(tree: ast.Module, path: Path, function: str, variable: str) -> Template | None:
    """The text `variable` holds in the `if persona:` branch of the first function whose name contains
    `function`: its string-literal assignments and `+=`s, with `{persona}` as the one slot."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.FunctionDef) and function in node.name):
            continue
        for branch in ast.walk(node):
            if isinstance(branch, ast.If) and isinstance(branch.test, ast.Name) and branch.test.id == "persona":
                parts = _assignments(branch.body, variable, path)
                if parts:
                    return Template(tuple(parts))
    return None


def _assignments(body: list[ast.stmt], variable: str, path: Path) -> list[str | None]:
    parts: list[str | None] = []
    for statement in body:
        if isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
            if not any(isinstance(t, ast.Name) and t.id == variable for t in targets):
                continue
            parts = []  # a plain assignment starts the text over
        elif isinstance(statement, ast.AugAssign) and isinstance(statement.op, ast.Add):
            if not (isinstance(statement.target, ast.Name) and statement.target.id == variable):
                continue
            value = statement.value
        else:
            continue
        parts += _literal(value, path)
    return parts


def _literal(value: ast.expr, path: Path) -> list[str | None]:
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return [value.value]
    if isinstance(value, ast.JoinedStr):
        parts: list[str | None] = []
        for piece in value.values:
            if isinstance(piece, ast.Constant) and isinstance(piece.value, str):
                parts.append(piece.value)
            elif (
                isinstance(piece, ast.FormattedValue)
                and isinstance(piece.value, ast.Name)
                and piece.value.id == "persona"
                and piece.conversion == -1
                and piece.format_spec is None
            ):
                parts.append(None)
            else:
                raise InputError(str(path), value.lineno, "a system prompt f-string has a slot other than {persona}")
        return parts
    raise InputError(str(path), value.lineno, "a system prompt is built from something other than string literals")


def load_questions(checkout: Checkout, folder: str) -> tuple[list[str], dict[str, dict[str, list[str]]]]:
    """Personas (code/personas.py's order, else by file name) and each one's task → questions, as
    the reference loads them (`questions/<folder>/<persona>.json`, the persona being the file name)."""
    base = checkout.root / folder
    if not base.is_dir():
        raise InputError(str(base), None, "no such question folder in the checkout")
    personas = checkout.personas if checkout.personas is not None else [p.stem for p in sorted(base.glob("*.json"))]
    if not personas:
        raise InputError(str(base), None, "no <persona>.json question files")
    questions: dict[str, dict[str, list[str]]] = {}
    for persona in personas:
        path = base / f"{persona}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(str(path), None, f"missing: {PERSONAS} lists this persona") from None
        except json.JSONDecodeError as exc:
            raise InputError(str(path), exc.lineno, f"malformed JSON: {exc.msg}") from None
        if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(q, str) for q in v) for v in data.values()
        ):
            raise InputError(str(path), None, "expected an object of task name → list of questions")
        for task in data:
            checkout.rubric(task)
        questions[persona] = data
    return personas, questions


__all__ = ["Checkout", "Template", "load_checkout", "load_questions"]
