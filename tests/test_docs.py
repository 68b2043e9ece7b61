"""The README's configuration table and quickstart stay true to the code."""

from __future__ import annotations

from pathlib import Path

from agenttrace._config import PARAMS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_readme_table():
    rows = [line for line in README.splitlines() if line.startswith("| ") and "`" in line]
    for param in PARAMS:
        assert any(f"`{param.name}`" in row and f"`{param.env}`" in row for row in rows), param.name


def test_quickstart_opens_with_the_two_commands():
    quickstart = README.split("## Quickstart", 1)[1]
    commands = [
        line.split("#")[0].strip()
        for line in quickstart.split("```sh", 1)[1].split("```", 1)[0].splitlines()
        if line.strip()
    ]
    assert commands == ["make demo", "make test"]
