"""A recording stand-in for `oneiscsi.run.Runner`, for unit tests of the actions.

The actions are given Runners; in unit tests they get these. Every command
they run is recorded as `(host, argv)` in one shared list, in order, and
answered by the first rule that matches it (or with empty success). A
failing answer goes through the command's own explanation, exactly as the
real Runner does, so the tests see the errors the actions see. Nothing is
started: no process, no ssh.
"""
from __future__ import annotations

import io
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from oneiscsi import config
from oneiscsi.command import Command
from oneiscsi.run import FileRange, check_host, failure


def make_config(**values: str):
    """A Config of the defaults with some keys set, as ONE_ISCSI_<KEY> would."""
    return config.load(env={f"ONE_ISCSI_{key}": value for key, value in values.items()})


@dataclass
class Rule:
    words: tuple[str, ...]       # all of them in the argv, in this order
    out: str = ""
    rc: int = 0
    stderr: str = ""
    host: Optional[str] = None   # only on this host
    times: Optional[int] = None  # only this many times
    then: Optional[Callable[[], None]] = None  # runs when the rule answers
    stdin: Optional[str] = None  # only commands whose input holds this text

    def matches(self, host: str, argv: tuple[str, ...], text: Optional[str] = None) -> bool:
        if self.host not in (None, host) or self.times == 0:
            return False
        if self.stdin is not None and self.stdin not in (text or ""):
            return False
        rest = iter(argv)
        return all(any(word == arg for arg in rest) for word in self.words)


@dataclass
class Recorder:
    """What the actions ran, on which hosts, and how to answer them."""
    cfg: object
    dry_run: bool = False
    calls: list = field(default_factory=list)      # (host, argv list)
    sessions: list = field(default_factory=list)   # (host, locked)
    locks: list = field(default_factory=list)      # ("hold", host, path) / ("release", host, LOCK_FILE)
    fed: dict = field(default_factory=dict)        # host -> bytes fed to its commands
    commands: list = field(default_factory=list)   # the Commands run, in order (their stdin too)
    rules: list = field(default_factory=list)

    def __post_init__(self):
        # a tgt target server: LIO has none of its targets (lio.has_target fails)
        self.fail("test", "-d")

    def answer(self, *words: str, out: str = "", rc: int = 0, stderr: str = "", host: Optional[str] = None,
               times: Optional[int] = None, then: Optional[Callable[[], None]] = None,
               stdin: Optional[str] = None) -> None:
        """Answer commands holding words (in order) with out, or fail them with rc and stderr.
        Later rules come first: a test refines the general answers of its fixture."""
        self.rules.insert(0, Rule(tuple(words), out, rc, stderr, host, times, then, stdin))

    def fail(self, *words: str, stderr: str = "failed", rc: int = 1, **options) -> None:
        self.answer(*words, rc=rc, stderr=stderr, **options)

    def runner(self, host: str) -> "FakeRunner":
        return FakeRunner(self, check_host(host))

    def hosts(self, host: str) -> "FakeRunner":
        """For the transfer actions: the Runner of a host by name."""
        return self.runner(host)

    def argvs(self, host: Optional[str] = None) -> list[list[str]]:
        """The commands run (on host, if given), in order."""
        return [argv for on, argv in self.calls if host in (None, on)]

    def _run(self, host: str, cmd: Command) -> str:
        self.calls.append((host, list(cmd.argv)))
        self.commands.append(cmd)
        rule = next((rule for rule in self.rules if rule.matches(host, cmd.argv, cmd.input)), None)
        if rule is None:
            return ""
        if rule.times is not None:
            rule.times -= 1
        if rule.then:
            rule.then()
        if rule.rc and rule.rc not in cmd.accept:
            raise failure(cmd, host, rule.rc, rule.stderr)
        return rule.out


class FakeRunner:
    """The Runner interface the actions use, recording into a Recorder."""

    def __init__(self, recorder: Recorder, host: str):
        self.recorder, self.host, self.cfg = recorder, host, recorder.cfg
        self.dry_run = recorder.dry_run
        self.local = host == "localhost"

    def resolve(self, cmd: Command) -> list[str]:
        return list(cmd.argv)

    @contextmanager
    def session(self, lock: bool = False, hold=()):
        self.recorder.sessions.append((self.host, lock))
        self.recorder.locks += [("hold", self.host, path) for path in hold]
        yield FakeSession(self)

    def run(self, cmd: Command) -> str:
        return self.run_all([cmd])

    def run_all(self, commands: Iterable[Command]) -> str:
        with self.session() as session:
            return "".join(session.run(cmd) for cmd in commands)

    def feed(self, cmd: Command, stream: Iterable) -> None:
        data = b"".join(_bytes(item) for item in stream)  # consumed first, as the real command reads all its stdin
        self.recorder._run(self.host, cmd)
        self.recorder.fed[self.host] = self.recorder.fed.get(self.host, b"") + data

    @contextmanager
    def output_stream(self, cmd: Command):
        yield io.BytesIO(self.recorder._run(self.host, cmd).encode())


def _bytes(item) -> bytes:
    if isinstance(item, FileRange):
        return os.pread(item.fd, item.length, item.offset)
    return bytes(item)


class FakeSession:
    def __init__(self, runner: FakeRunner):
        self.runner, self.host, self.cfg = runner, runner.host, runner.cfg

    def run(self, cmd: Command, timeout: Optional[float] = None) -> str:
        if self.runner.dry_run and not cmd.query:
            return ""
        return self.runner.recorder._run(self.host, cmd)

    def release_lock(self) -> None:
        self.runner.recorder.locks.append(("release", self.host, self.cfg.lock_file))

    def finish(self, cmd: Command, stream, timeout: Optional[float] = None) -> None:
        """As Session.finish: cmd is fed stream (FileRanges read from their files)."""
        self.runner.feed(cmd, stream)

    def close(self) -> None:
        pass


