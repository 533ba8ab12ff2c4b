import os
import subprocess
from pathlib import Path

import typer

from oneiscsi import config, manpage
from oneiscsi.cli import app

PAGE = Path(__file__).resolve().parents[2] / "man" / "one-iscsi.1"
SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "CONFIGURATION", "FILES",
            "ENVIRONMENT", "EXIT STATUS", "EXAMPLES"]


def rendered() -> str:
    done = subprocess.run(["man", "--warnings", "-l", str(PAGE)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MANWIDTH": "100", "MAN_KEEP_FORMATTING": ""})
    assert done.stderr == "", done.stderr
    return done.stdout


def test_checked_in_page_is_up_to_date():
    assert PAGE.read_text() == manpage.render(), "man/one-iscsi.1 is out of date: run `make man`"


def test_renders_without_warnings_with_every_section():
    text = rendered()
    lines = text.splitlines()
    for section in SECTIONS:
        assert section in lines, section


def leaves(path: str, group):
    """(`group command`, command) of every command under group, at any depth."""
    for name, command in group.commands.items():
        named = f"{path} {name}".strip()
        if hasattr(command, "commands"):
            yield from leaves(named, command)
        else:
            yield named, command


def test_documents_every_command_option_and_key():
    text = " ".join(rendered().split())
    root = typer.main.get_command(app)
    commands = list(leaves("", root))
    assert len(commands) > 25 and "target acl add" in dict(commands)
    for name, command in commands:
        assert f"one-iscsi {name} [OPTIONS]" in text
        for param in command.params:
            for flag in getattr(param, "opts", []):
                if flag.startswith("-"):
                    assert flag in text, (name, flag)
    for key in config.DEFAULTS:
        assert f"{key} (default:" in text, key
