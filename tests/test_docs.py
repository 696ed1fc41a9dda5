from __future__ import annotations

from pathlib import Path

from opencharacter.config import reference_markdown

CONFIG_DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_configuration_reference_matches_the_code():
    text = CONFIG_DOC.read_text(encoding="utf-8")
    block = text.split("<!-- config-reference:start -->\n", 1)[1].split("\n<!-- config-reference:end -->", 1)[0]
    assert block == reference_markdown().strip(), (
        "regenerate with: python -c 'from opencharacter.config import reference_markdown; print(reference_markdown())'"
    )
