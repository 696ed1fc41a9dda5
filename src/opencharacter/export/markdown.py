"""Markdown (and HTML) for the files the package writes, through one Jinja environment.

Reports, cards and summaries are templates in `export/templates/` rendered with values, never
strings glued together: a table is `{{ table(headers, rows) }}`, YAML front matter is
`{{ front_matter(data) }}`. Values are data: a persona holding `{{ x }}` or a `|` stays text (table
cells escape pipes and line breaks), and `.html` templates are autoescaped, so a model's answer
cannot inject markup into a report. Compiled templates are cached by the environment.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup


def cell(value: Any) -> str:
    """One table cell: pipes escaped, line breaks as spaces, None as empty."""
    if value is None:
        return ""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], align: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; `align` per column: "left", "right", "center" (default plain)."""
    marks = {"left": ":---", "right": "---:", "center": ":---:"}
    rule = [marks.get(a, "---") for a in align] if align else ["---"] * len(headers)
    lines = [f"| {' | '.join(cell(h) for h in headers)} |", f"|{'|'.join(rule)}|"]
    lines += [f"| {' | '.join(cell(v) for v in row)} |" for row in rows]
    return "\n".join(lines)


def front_matter(data: Mapping[str, Any]) -> str:
    """YAML front matter (`---` … `---`), as the Hugging Face Hub reads it from a README."""
    return "---\n" + yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True) + "---\n"


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("opencharacter.export", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml"), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Markup: what these helpers return is already Markdown, not text for an HTML template to escape.
    env.globals.update(
        table=lambda *a, **k: Markup(table(*a, **k)),
        front_matter=lambda data: Markup(front_matter(data)),
        cell=cell,
    )
    return env


def render(template: str, **values: Any) -> str:
    """`export/templates/<template>` rendered with `values`."""
    return environment().get_template(template).render(**values)


__all__ = ["cell", "environment", "front_matter", "render", "table"]
