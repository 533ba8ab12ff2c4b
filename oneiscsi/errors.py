"""The errors one-iscsi reports; `cli` turns each into one line and an exit status.

Known failures are OneIscsiError (exit 1) and InvalidInput (exit 2); anything
else that escapes is a bug (exit 3, details in a log file). Imports nothing
of the package.
"""
from __future__ import annotations

import signal
from typing import Optional, Sequence


SHOWN = 200  # characters of a value echoed in a message


def shown(value: object, limit: int = SHOWN) -> str:
    """value for a message: at most limit characters of it."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


class OneIscsiError(Exception):
    """Something failed: exit status 1. Clean-up that failed after it (a
    rollback) travels with it, in rollback_failures."""

    exit_code = 1

    def __init__(self, message: str = "", rollback_failures: Sequence[str] = ()):
        super().__init__(message)
        self.rollback_failures = tuple(rollback_failures)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        if not self.rollback_failures:
            return self.message
        return f"{self.message} (and undoing it failed: {'; '.join(self.rollback_failures)})"


class InvalidInput(OneIscsiError, ValueError):
    """A name, number or option refused before anything runs: exit status 2."""

    exit_code = 2


class NotFound(OneIscsiError):
    """The thing named does not exist where it was looked for."""


class AlreadyExists(OneIscsiError):
    """What was to be created is there already (tgtd: 'this target already exists')."""


class AlreadyDone(OneIscsiError):
    """A change that was in place before (iscsiadm: session exists, no session)."""


class CommandError(OneIscsiError):
    """A command that could not be started, failed, or ran out of time."""

    def __init__(self, program: str, host: str, rc: Optional[int], stderr: str, hint: str = ""):
        self.program, self.host, self.rc, self.stderr = program, host, rc, stderr
        self.hint = hint or _sudo_hint(stderr, program, host)
        super().__init__(self._describe())

    def _describe(self) -> str:
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        # the program's own complaint, rather than e.g. dd's closing statistics
        own = [line for line in lines if line.startswith(f"{self.program}:")]
        detail = (own or lines or ["no error output"])[-1]
        status = "timed out" if self.rc is None else f"exit {self.rc}"
        message = f"{self.program} failed on {self.host} ({status}): {detail}"
        return f"{self.hint}: {message}" if self.hint else message

    def with_hint(self, hint: str) -> "CommandError":
        """The same failure, with a hint of what to do in front."""
        return CommandError(self.program, self.host, self.rc, self.stderr, hint)


class StepFailed(OneIscsiError):
    """A step of an action failed, and what the action had done was undone.
    Keeps the exit status of the failure (bad input stays 2)."""

    def __init__(self, step: str, host: str, cause: BaseException, rollback_failures: Sequence[str] = ()):
        detail = cause if isinstance(cause, OneIscsiError) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"{step} failed on {host}: {detail}", rollback_failures)
        self.exit_code = getattr(cause, "exit_code", 1)


class Interrupted(BaseException):
    """A signal (SIGTERM, SIGINT, SIGHUP) stopped the action: exit status
    128+n once what it had made was undone. Not an Exception: nothing on the
    way up may take it for an ordinary failure and carry on."""

    def __init__(self, signum: int, rollback_failures: Sequence[str] = ()):
        super().__init__(signum)
        self.signum = signum
        self.during = ""
        self.rollback_failures = tuple(rollback_failures)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        message = f"interrupted by {signal.Signals(self.signum).name}"
        if self.during:
            message += f" while {self.during}"
        if self.rollback_failures:
            message += f" (and undoing it failed: {'; '.join(self.rollback_failures)})"
        return message


def _sudo_hint(stderr: str, program: str, host: str) -> str:
    if "sudo: a password is required" in stderr or "sudo: a terminal is required" in stderr:
        return f"sudo on {host} asks for a password: add a NOPASSWD sudoers rule for {program} (see README)"
    return ""
