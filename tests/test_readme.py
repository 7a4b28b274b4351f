"""The README keeps its promises: the two commands first, every setting documented."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from issuer.config import Settings

README = (Path(__file__).parent.parent / "README.md").read_text("utf-8")


def test_the_readme_opens_with_the_two_commands() -> None:
    block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["./run serve", "./run test"]
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text("utf-8")
    assert "exec ./run test" in ci


def test_every_setting_is_in_the_configuration_tables() -> None:
    for f in fields(Settings):
        name = f"`ISSUER_{f.name.upper()}`"
        assert f"| {name}" in README or f"/ {name}" in README, f"{name} is not documented"
