"""one-iscsi run in this process: its exit status and output, without the
cost of starting Python."""
from __future__ import annotations

from dataclasses import dataclass

from oneiscsi.cli import main


@dataclass
class Result:
    rc: int
    out: str
    err: str


def run_cli(capsys, *args: str) -> Result:
    """`one-iscsi ARGS` in this process; its output read (and reset) through
    capsys, pytest's capture of stdout and stderr."""
    capsys.readouterr()
    rc = main(list(args))
    captured = capsys.readouterr()
    return Result(rc, captured.out, captured.err)
