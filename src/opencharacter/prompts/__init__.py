"""Versioned prompt templates, one Jinja file per prompt: `<name>.v<N>.jinja`.

A template defines `system` and `user` blocks. User text (personas, instructions, answers) is only
ever passed in as *data*: it is substituted into the template, never compiled as one, and the
environment is sandboxed, so `{{ ... }}` inside a persona stays literal text.
The version is part of every cache key and record, so editing a prompt means adding `v<N+1>`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

from opencharacter.errors import ConfigError
from opencharacter.records import ChatMessage

_FILE = re.compile(r"^(?P<name>[a-z_]+)\.v(?P<version>\d+)\.jinja$")


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, keep_trailing_newline=False, trim_blocks=True, lstrip_blocks=True
    )


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    """One compilation per template source for the life of the process.

    Compiling is ~30× the cost of rendering; before this cache it was two thirds of the client
    CPU of a `profiles` run. Keyed by the source text, so two equal templates share one.
    """
    return _environment().from_string(source)


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    source: str

    @property
    def id(self) -> str:
        """`name@vN`: what records and cache keys store."""
        return f"{self.name}@v{self.version}"

    @property
    def compiled(self) -> Template:
        return _compiled(self.source)

    def render_block(self, block: str, **variables: Any) -> str:
        return self._render_blocks((block,), variables)[0]

    def _render_blocks(self, blocks: tuple[str, ...], variables: dict[str, Any]) -> list[str]:
        template = self.compiled
        for block in blocks:
            if block not in template.blocks:
                raise ConfigError(f"prompt {self.id} has no {{% block {block} %}}")
        context = template.new_context(variables)  # one context for all blocks: building it is most of a render
        return ["".join(template.blocks[block](context)).strip() for block in blocks]

    def has_block(self, block: str) -> bool:
        return block in self.compiled.blocks

    def render(self, *, prefix: str = "", **variables: Any) -> list[ChatMessage]:
        """System and user messages; a template without a `user` block gives only the system message.

        `prefix` picks another pair of blocks (`one_system`, `one_user`): one template version can
        hold two shapes of one prompt, as rewrite@v2 does for one answer and for a session.
        """
        roles = ("system", "user") if self.has_block(f"{prefix}user") else ("system",)
        contents = self._render_blocks(tuple(prefix + role for role in roles), variables)
        return [ChatMessage(role=role, content=content) for role, content in zip(roles, contents, strict=True)]


def _available() -> dict[str, dict[int, str]]:
    found: dict[str, dict[int, str]] = {}
    for entry in resources.files(__package__).iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.setdefault(match["name"], {})[int(match["version"])] = entry.read_text(encoding="utf-8")
    return found


@functools.cache
def load_prompt(name: str, version: int | None = None) -> PromptTemplate:
    """The named template at `version`, or its newest version."""
    versions = _available().get(name)
    if not versions:
        raise ConfigError(f"unknown prompt {name!r}; available: {', '.join(sorted(_available()))}")
    chosen = max(versions) if version is None else version
    if chosen not in versions:
        raise ConfigError(f"prompt {name!r} has no version {chosen}; available: {sorted(versions)}")
    return PromptTemplate(name, chosen, versions[chosen])


def parse_prompt_id(prompt_id: str) -> PromptTemplate:
    """Inverse of `PromptTemplate.id`, for replaying what a run recorded."""
    name, _, version = prompt_id.partition("@v")
    if not version.isdigit():
        raise ConfigError(f"malformed prompt id {prompt_id!r}; expected name@vN")
    return load_prompt(name, int(version))
