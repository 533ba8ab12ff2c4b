"""A command to run on a host: what it is, not how it runs.

Builders (tgt.py, lvm.py, ...) return Commands; `run.Runner` runs them. A
Command carries everything about itself that matters when it runs: whether
it needs root, whether it only reads (and so still runs under --dry-run),
which exit codes besides 0 are fine, its stdin, which words are secret, and
how to explain its failure from its stderr. Imports nothing of the package.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Optional, Sequence

MASK = "********"


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    privileged: bool = False            # needs root on the host: the SUDO prefix goes before it
    query: bool = False                 # only reads state: runs even under --dry-run
    accept: frozenset = frozenset()     # exit codes that are not failures, besides 0
    input: Optional[str] = None         # text on stdin
    secrets: frozenset = frozenset()    # words never shown (passwords)
    # explain(error) -> a better error for this command's failure, or None
    explain: Optional[Callable] = field(default=None, compare=False, repr=False)

    @property
    def program(self) -> str:
        return self.argv[0]

    def masked(self, argv: Optional[Sequence[str]] = None) -> list[str]:
        """argv (default: this command's) with the secret words masked."""
        return [MASK if word in self.secrets else word for word in (self.argv if argv is None else argv)]

    def but(self, **changes) -> "Command":
        """The same command with some fields changed."""
        return replace(self, **changes)


def command(*argv: str, privileged: bool = False, query: bool = False, accept: Iterable[int] = (),
            input: Optional[str] = None, secrets: Iterable[str] = (),
            explain: Optional[Callable] = None) -> Command:
    return Command(tuple(argv), privileged, query, frozenset(accept), input,
                   frozenset(word for word in secrets if word), explain)
