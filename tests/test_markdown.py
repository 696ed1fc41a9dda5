"""The one Markdown helper: tables, front matter, templates with values as data, HTML autoescaped."""

from __future__ import annotations

import yaml

from opencharacter.export.markdown import environment, front_matter, render, table


def test_a_table_keeps_every_cell_in_its_column():
    text = table(["model", "note"], [("a|b", "two\nlines"), ("c", None)], align=["left", "right"])
    assert text.splitlines() == [
        "| model | note |",
        "|:---|---:|",
        "| a\\|b | two lines |",
        "| c |  |",
    ]


def test_front_matter_is_yaml_the_hub_reads():
    text = front_matter({"license": "apache-2.0", "tags": ["role-play"], "pretty_name": "Ines: «hi»"})
    assert text.startswith("---\n") and text.endswith("---\n")
    assert yaml.safe_load(text.strip("-\n")) == {
        "license": "apache-2.0",
        "tags": ["role-play"],
        "pretty_name": "Ines: «hi»",
    }


def test_values_are_data_and_html_is_escaped():
    rows = [("{{ 7 * 7 }} · <script>", 1, 2, 3, "no price")]
    section = render("cost.md.j2", rows=rows, total=0.0, unpriced=["m"])
    assert "{{ 7 * 7 }} · <script>" in section and "49" not in section  # never compiled as a template
    assert environment().select_template(["cost.md.j2"]).render(rows=[], total=1.0, unpriced=[]).startswith("## Cost")
    assert environment().autoescape("report.html") and not environment().autoescape("card.md")
