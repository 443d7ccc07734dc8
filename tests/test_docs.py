"""The documentation keeps up with the code: every hook and every command is documented in docs/, and the
README stays short (datasette keeps such tests)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).parent.parent
DOCS = "\n".join(page.read_text() for page in sorted((ROOT / "docs").glob("*.md")))


def _hooks() -> list[str]:
    tree = ast.parse((ROOT / "vsr" / "hookspecs.py").read_text())
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("register_")]


def _commands() -> list[str]:
    from vsr.cli.main import app

    group = typer.main.get_command(app)
    names = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        names.append(f"vsr {name}")
        names.extend(f"vsr {name} {sub}" for sub in getattr(command, "commands", {}))  # a group's commands
    return names


def test_there_are_hooks_and_commands_to_check() -> None:
    assert len(_hooks()) >= 6 and "vsr upscale" in _commands() and "vsr models import" in _commands()


@pytest.mark.parametrize("hook", _hooks())
def test_every_hook_is_documented(hook: str) -> None:
    assert f"`{hook}" in DOCS, f"{hook} is not documented in docs/ (docs/plugins.md)"


@pytest.mark.parametrize("command", _commands())
def test_every_command_is_documented(command: str) -> None:
    assert command in DOCS, f"{command!r} is not documented in docs/"


def test_the_readme_is_short_and_links_only_to_what_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.count("\n") <= 300
    for target in readme.split("](")[1:]:
        link = target.split(")")[0]
        if not link.startswith(("http", "#")):
            assert (ROOT / link).exists(), link
