"""Undo: what an action has done, to be taken back if a later step fails.

Every action that creates or changes something runs its steps through one
Undo: each step that makes something pushes how to take it back; a failing
step runs those in reverse order (each on its own: one failing undo does not
stop the rest; one finding its thing gone already is fine), and the error names the step and host, with any undo that
failed travelling along.
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Callable, Optional, Sequence, TypeVar, Union

from .command import Command
from .errors import Interrupted, NotFound, OneIscsiError, StepFailed
from .run import Runner

T = TypeVar("T")
Action = Union[Callable[[], object], "tuple[Runner, Command]"]


class Undo:
    def __init__(self, host: str):
        self.host = host
        self._undos: list[tuple[str, Action]] = []

    def push(self, what: str, undo: Callable[[], object]) -> None:
        """undo takes back what was just done; what says it, for a failure of undo."""
        self._undos.append((what, undo))

    def push_commands(self, runner: Runner, commands: Sequence[Command]) -> None:
        """Commands that take back what was just done, run on runner: in a new
        session (the failure may have broken the step's), one per host."""
        for cmd in commands:
            self._undos.append((" ".join(cmd.masked()), (runner, cmd)))

    def keep(self) -> None:
        """What was done so far stays, whatever happens later."""
        self._undos.clear()

    def step(self, name: Optional[str], work: Callable[[], T]) -> T:
        """Run one step; if it fails, undo everything and raise. With a name,
        the error says `<name> failed on <host>: ...`; without, it is the
        step's own error."""
        try:
            return work()
        except BaseException as err:  # whatever failed (even a signal), what was made must go
            failures = self.rollback()
            if isinstance(err, Interrupted) and name and not err.during:
                err.during = f"{name} on {self.host}"
            if isinstance(err, Interrupted) or (isinstance(err, OneIscsiError) and name is None):
                err.rollback_failures += tuple(failures)
                raise
            if not isinstance(err, Exception):
                raise
            raise StepFailed(name or "a step", self.host, err, failures) from err

    def rollback(self) -> list[str]:
        """Run the undos, newest first; returns those that failed, with why."""
        undos, self._undos = list(reversed(self._undos)), []
        failures = []
        with ExitStack() as stack:
            sessions = {}
            for what, undo in undos:
                try:
                    if callable(undo):
                        undo()
                        continue
                    runner, cmd = undo
                    if runner not in sessions:
                        sessions[runner] = stack.enter_context(runner.session())
                    sessions[runner].run(cmd)
                except NotFound:
                    continue  # gone already: nothing to take back
                except OneIscsiError as err:
                    failures.append(f"{what}: {err}")
        return failures
