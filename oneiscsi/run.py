"""The only module that starts processes.

A `Runner` runs argv lists on one host: directly when the host is this
machine, otherwise through ssh, where the remote command line is made with
`shlex.join` and nowhere else. Command builders put a program name in argv[0];
the Runner replaces it with the configured command and adds the sudo prefix.
"""
from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from typing import BinaryIO, Iterable, Iterator, Optional, Sequence, TextIO

from .config import Config, hostname
from .errors import InvalidInput, OneIscsiError

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_SSH_HOST = re.compile(r"[A-Za-z0-9_\[][A-Za-z0-9_.@:%\[\]-]*")
# Printed by a failing command of a batch, so the caller learns which one failed.
_STEP_MARK = "one-iscsi-failed-step="
_STEP_LINE = re.compile(rf"^{_STEP_MARK}(\d+)$", re.MULTILINE)

Argv = Sequence[str]


class CommandError(OneIscsiError):
    """A command that could not be started, failed, or ran out of time."""

    def __init__(self, argv: Argv, host: str, rc: Optional[int], stderr: str, hint: str = ""):
        self.argv, self.host, self.rc, self.stderr, self.hint = list(argv), host, rc, stderr, hint
        super().__init__(str(self))

    @property
    def program(self) -> str:
        return self.argv[0] if self.argv else "command"

    def __str__(self) -> str:
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else "no error output"
        status = "timed out" if self.rc is None else f"exit {self.rc}"
        message = f"{self.program} failed on {self.host} ({status}): {detail}"
        return f"{self.hint}: {message}" if self.hint else message


def is_local(host: str) -> bool:
    me = hostname()
    return host in LOCAL_NAMES or host in (me, me.split(".")[0])


def check_host(host: str) -> str:
    if not _SSH_HOST.fullmatch(host or ""):
        raise InvalidInput(f"invalid host name {host!r}")
    return host


class Runner:
    """Runs commands on one host, honouring the configuration and --dry-run."""

    def __init__(self, host: str, cfg: Config, dry_run: bool = False, out: TextIO = None):
        self.host = check_host(host)
        self.cfg = cfg
        self.dry_run = dry_run
        self.local = is_local(host)
        self.out = out

    def resolve(self, argv: Argv, privileged: bool = True) -> list[str]:
        """The argv as it runs on the host: configured command, sudo prefix."""
        prefix = self.cfg.tool(argv[0])
        if prefix is None and not isinstance(argv, Privileged):
            return list(argv)
        command = [*prefix, *argv[1:]] if prefix else list(argv)
        needs_sudo = privileged and (not self.local or os.geteuid() != 0)
        return [*(self.cfg.sudo if needs_sudo else ()), *command]

    def ssh_argv(self, remote_command: str) -> list[str]:
        connect = max(1, math.ceil(self.cfg.timeout))
        return [*self.cfg.ssh, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect}",
                "--", self.host, remote_command]

    def run(self, argv: Argv, query: bool = False) -> str:
        """Run one command and return its stdout.

        A query only reads state, so it runs even with --dry-run; anything else
        is printed instead of run.
        """
        return self.run_all([argv], query=query)

    def read_local(self, argv: Argv) -> str:
        """Run a read-only command here, as the invoking user (no sudo)."""
        resolved = self.resolve(argv, privileged=False)
        return self._execute(resolved, lambda rc, err: CommandError(argv, "localhost", rc, err))

    @contextmanager
    def output_stream(self, argv: Argv, privileged: bool = False) -> Iterator[BinaryIO]:
        """A command's stdout as a stream (not privileged: as the invoking user,
        when local); its exit status is checked when the stream is closed."""
        resolved = self.resolve(argv, privileged=privileged)
        process = self._start(resolved if self.local else self.ssh_argv(shlex.join(resolved)),
                              stdin=None, stdout=subprocess.PIPE)
        try:
            yield process.stdout
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            process.stdout.close()
        self._finish(process, argv, self.host, self.cfg.copy_timeout)

    def feed(self, argv: Argv, chunks: Iterable[bytes]) -> None:
        """Run argv on the host with chunks as its stdin (one ssh session),
        within COPY_TIMEOUT."""
        if self.dry_run:
            self._print_dry_run([argv])
            return
        resolved = self.resolve(argv)
        process = self._start(resolved if self.local else self.ssh_argv(shlex.join(resolved)),
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        watchdog = threading.Timer(self.cfg.copy_timeout, process.kill)
        watchdog.start()
        try:
            for chunk in chunks:
                process.stdin.write(chunk)
            process.stdin.close()
        except BrokenPipeError:
            pass  # the command stopped reading: its exit status says why
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            watchdog.cancel()
        self._finish(process, argv, self.host, self.cfg.copy_timeout)

    def _start(self, argv: list[str], stdin, stdout) -> subprocess.Popen:
        errors = tempfile.TemporaryFile()  # a file, not a pipe: it can never fill up and block
        try:
            process = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=errors, env=_child_env())
        except FileNotFoundError:
            errors.close()
            raise CommandError(argv, self.host, 127, f"{argv[0]}: command not found") from None
        process.errors = errors
        return process

    def _finish(self, process: subprocess.Popen, argv: Argv, host: str, timeout: float) -> None:
        try:
            rc = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            rc = process.wait()
        if process.stdin:
            process.stdin.close()
        process.errors.seek(0)
        stderr = process.errors.read().decode(errors="replace")
        process.errors.close()
        if rc == -9:
            raise CommandError(argv, host, None, f"no end within {timeout:g} s (COPY_TIMEOUT)")
        if rc != 0:
            raise CommandError(argv, host, rc, stderr, hint=_ssh_hint(rc) if not self.local else "")

    def run_all(self, argvs: Sequence[Argv], query: bool = False) -> str:
        """Run commands in order, stopping at the first failure; one ssh session
        for all of them. Returns their stdout, concatenated."""
        if not argvs:
            return ""
        if self.dry_run and not query:
            self._print_dry_run(argvs)
            return ""
        if self.local:
            return "".join(self._run_local(argv) for argv in argvs)
        return self._run_remote(argvs)

    def _print_dry_run(self, argvs: Sequence[Argv]) -> None:
        out = self.out or sys.stdout
        for argv in argvs:
            resolved = self.resolve(argv)
            line = shlex.join(resolved if self.local else self.ssh_argv(shlex.join(resolved)))
            print(line, file=out)

    def _run_local(self, argv: Argv) -> str:
        return self._execute(self.resolve(argv), lambda rc, err: CommandError(argv, self.host, rc, err),
                             ok_codes=accepted_codes(argv))

    def _run_remote(self, argvs: Sequence[Argv]) -> str:
        script = "\n".join(
            f"{shlex.join(self.resolve(argv))} || {{ rc=$?; case $rc in {_case(argv)}) ;; "
            f"*) echo {_STEP_MARK}{index} >&2; exit $rc;; esac; }}"
            for index, argv in enumerate(argvs))

        def failure(rc: Optional[int], stderr: str) -> CommandError:
            step = _STEP_LINE.search(stderr)
            if step is None:
                return CommandError(["ssh"], self.host, rc, stderr, hint=_ssh_hint(rc))
            return CommandError(argvs[int(step.group(1))], self.host, rc,
                                _STEP_LINE.sub("", stderr))

        return self._execute(self.ssh_argv(script), failure)

    def _execute(self, argv: list[str], failure, ok_codes: tuple[int, ...] = ()) -> str:
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.cfg.timeout, env=_child_env())
        except FileNotFoundError:
            raise failure(127, f"{argv[0]}: command not found") from None
        except subprocess.TimeoutExpired:
            raise failure(None, f"no answer within {self.cfg.timeout:g} s (TIMEOUT)") from None
        stderr = done.stderr.decode(errors="replace")
        if done.returncode != 0 and done.returncode not in ok_codes:
            raise failure(done.returncode, stderr)
        return done.stdout.decode(errors="replace")


class Accepting(list):
    """An argv whose command may also end with the given exit codes."""

    def __init__(self, argv: Argv, *codes: int):
        super().__init__(argv)
        self.codes = codes


class Privileged(list):
    """An argv of a plain program (not a configured tool) that needs the sudo prefix."""


def accepted_codes(argv: Argv) -> tuple[int, ...]:
    return getattr(argv, "codes", ())


def _case(argv: Argv) -> str:
    return "|".join(str(code) for code in accepted_codes(argv)) or "0"


def _ssh_hint(rc: Optional[int]) -> str:
    return "cannot reach host over ssh" if rc == 255 else ""


def _child_env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C", "LVM_SUPPRESS_FD_WARNINGS": "1"}
