"""The only module that starts processes.

A `Runner` runs argv lists on one host: directly when the host is this
machine, otherwise through ssh, where the command line is made with
`shlex.join` and nowhere else. Command builders put a program name in argv[0];
the Runner replaces it with the configured command and adds the sudo prefix.

A `Session` runs any number of commands on a host over one ssh connection: a
shell on the host reads the quoted commands one by one, and each answer ends
with a random marker carrying the exit status. A session may hold the host's
lock file (flock) for its whole life, so that what it reads and what it then
changes cannot interleave with another one-iscsi.
"""
from __future__ import annotations

import io
import math
import os
import re
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import BinaryIO, Iterable, Iterator, Optional, Sequence, TextIO

from .config import Config, hostname
from .errors import InvalidInput, OneIscsiError

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
LOCK_BUSY_RC = 75  # flock -E: the lock could not be had in time
_SSH_HOST = re.compile(r"[A-Za-z0-9_\[][A-Za-z0-9_.@:%\[\]-]*")

Argv = Sequence[str]


class CommandError(OneIscsiError):
    """A command that could not be started, failed, or ran out of time."""

    def __init__(self, argv: Argv, host: str, rc: Optional[int], stderr: str, hint: str = ""):
        self.argv, self.host, self.rc, self.stderr = list(argv), host, rc, stderr
        self.hint = hint or _sudo_hint(stderr, self.program, host)
        super().__init__(str(self))

    @property
    def program(self) -> str:
        return self.argv[0] if self.argv else "command"

    def __str__(self) -> str:
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        # the program's own complaint, rather than e.g. dd's closing statistics
        own = [line for line in lines if line.startswith(f"{self.program}:")]
        detail = (own or lines or ["no error output"])[-1]
        status = "timed out" if self.rc is None else f"exit {self.rc}"
        message = f"{self.program} failed on {self.host} ({status}): {detail}"
        return f"{self.hint}: {message}" if self.hint else message


class Accepting(list):
    """An argv whose command may also end with the given exit codes."""

    def __init__(self, argv: Argv, *codes: int):
        super().__init__(argv)
        self.codes = codes


class Privileged(list):
    """An argv of a plain program (not a configured tool) that needs the sudo prefix."""


class WithInput(list):
    """An argv whose command reads the given text on stdin."""

    def __init__(self, argv: Argv, input: str):
        super().__init__(argv)
        self.input = input


class Secret(str):
    """An argument never shown: printed as ******** by --dry-run."""


def accepted_codes(argv: Argv) -> tuple[int, ...]:
    return getattr(argv, "codes", ())


def masked(argv: Argv) -> list[str]:
    return ["********" if isinstance(word, Secret) else word for word in argv]


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

    def ssh_argv(self, remote_command: str, options: Sequence[str] = ()) -> list[str]:
        connect = max(1, math.ceil(self.cfg.timeout))
        return [*self.cfg.ssh, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect}", *options,
                "--", self.host, remote_command]

    @contextmanager
    def session(self, lock: bool = False) -> Iterator["Session"]:
        """Commands on this host over one connection; with lock, the host's
        LOCK_FILE is taken at once and held until the session ends."""
        session = Session(self, lock)
        try:
            yield session
        finally:
            session.close()

    def run(self, argv: Argv, query: bool = False) -> str:
        """Run one command and return its stdout.

        A query only reads state, so it runs even with --dry-run; anything else
        is printed instead of run.
        """
        return self.run_all([argv], query=query)

    def run_all(self, argvs: Sequence[Argv], query: bool = False) -> str:
        """Run commands in order in one session, stopping at the first failure.
        Returns their stdout, concatenated."""
        if not argvs:
            return ""
        with self.session() as session:
            return "".join(session.run(argv, query=query) for argv in argvs)

    def print_dry_run(self, argv: Argv) -> None:
        resolved = masked(self.resolve(argv))
        print(shlex.join(resolved if self.local else self.ssh_argv(shlex.join(resolved))),
              file=self.out or sys.stdout)

    def read_local(self, argv: Argv) -> str:
        """Run a read-only command here, as the invoking user (no sudo)."""
        return _execute(self.resolve(argv, privileged=False), argv, "localhost", self.cfg.timeout)

    @contextmanager
    def output_stream(self, argv: Argv, privileged: bool = False) -> Iterator[BinaryIO]:
        """A command's stdout as a stream (not privileged: as the invoking user,
        when local); its exit status is checked when the stream is closed."""
        if self.dry_run:
            self.print_dry_run(argv)
            yield io.BytesIO()
            return
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
        self._finish(process, argv)

    def feed(self, argv: Argv, chunks: Iterable[bytes]) -> None:
        """Run argv on the host with chunks as its stdin (one ssh session,
        with COPY_SSH_OPTIONS: it carries image data), within COPY_TIMEOUT."""
        import threading

        if self.dry_run:
            self.print_dry_run(argv)
            return
        resolved = self.resolve(argv)
        remote = self.ssh_argv(shlex.join(resolved), self.cfg.copy_ssh_options)
        process = self._start(resolved if self.local else remote, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
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
        self._finish(process, argv)

    def _start(self, argv: list[str], stdin, stdout) -> subprocess.Popen:
        import tempfile

        errors = tempfile.TemporaryFile()  # a file, not a pipe: it can never fill up and block
        try:
            process = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=errors, env=_child_env())
        except FileNotFoundError:
            errors.close()
            raise CommandError(argv, self.host, 127, f"{argv[0]}: command not found") from None
        process.errors = errors
        return process

    def _finish(self, process: subprocess.Popen, argv: Argv) -> None:
        timeout = self.cfg.copy_timeout
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
            raise CommandError(argv, self.host, None, f"no end within {timeout:g} s (COPY_TIMEOUT)")
        if rc != 0:
            raise CommandError(argv, self.host, rc, stderr, hint="" if self.local else _ssh_hint(rc))


class Session:
    """Commands on one host: over ssh through one shell on the host, locally
    one process each. Opened on the first command that really runs."""

    def __init__(self, runner: Runner, lock: bool):
        self.runner = runner
        self.lock = lock
        self._channel = None
        if lock and not runner.dry_run:  # the lock is the point: take it now, fail now
            self._open()

    def _open(self):
        if self._channel is None:
            self._channel = (_LocalChannel if self.runner.local else _RemoteChannel)(self.runner, self.lock)
        return self._channel

    def run(self, argv: Argv, query: bool = False, input: Optional[str] = None,
            timeout: Optional[float] = None) -> str:
        """Run one command; stdout. A longer timeout than TIMEOUT may be given."""
        if self.runner.dry_run and not query:
            self.runner.print_dry_run(argv)
            return ""
        return self._open().run(argv, input if input is not None else getattr(argv, "input", None),
                                timeout or self.runner.cfg.timeout)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


class _LocalChannel:
    def __init__(self, runner: Runner, lock: bool):
        self.runner = runner
        self.lock_file = _take_local_lock(runner) if lock else None

    def run(self, argv: Argv, input: Optional[str], timeout: float) -> str:
        return _execute(self.runner.resolve(argv), argv, self.runner.host, timeout, accepted_codes(argv), input)

    def close(self) -> None:
        if self.lock_file is not None:
            self.lock_file.close()  # releases the flock


def _take_local_lock(runner: Runner):
    import fcntl

    cfg = runner.cfg
    try:
        lock_file = open(cfg.lock_file, "a")
    except OSError as err:
        raise OneIscsiError(f"cannot open lock file {cfg.lock_file} on {runner.host}: {err.strerror} "
                            "(LOCK_FILE)") from None
    deadline = time.monotonic() + cfg.lock_timeout
    delay = 0.01
    while True:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock_file
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock_file.close()
                raise _lock_error(runner) from None
            time.sleep(delay)  # bounded wait for the other holder
            delay = min(delay * 2, 0.2)


def _lock_error(runner: Runner) -> OneIscsiError:
    return OneIscsiError(f"lock {runner.cfg.lock_file} on {runner.host} is held by another one-iscsi "
                         f"for more than {runner.cfg.lock_timeout:g} s (LOCK_TIMEOUT)")


class _RemoteChannel:
    """A shell on the host reading commands from our pipe. After each command
    it prints a marker with the exit status to stdout and a marker to stderr."""

    def __init__(self, runner: Runner, lock: bool):
        import secrets

        self.runner = runner
        self.mark = f"one-iscsi-{secrets.token_hex(12)}"
        shell = ["env", "LC_ALL=C", "sh"]  # messages in English, whatever the host's locale
        if lock:
            cfg = runner.cfg
            shell = ["flock", "-w", f"{cfg.lock_timeout:g}", "-E", str(LOCK_BUSY_RC), cfg.lock_file, *shell]
        self.process = subprocess.Popen(runner.ssh_argv(shlex.join(shell)), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env())
        self.buffers = {self.process.stdout: bytearray(), self.process.stderr: bytearray()}
        timeout = runner.cfg.timeout + (runner.cfg.lock_timeout if lock else 0)
        self._exchange(["true"], ":", timeout)  # connected, and holding the lock

    def run(self, argv: Argv, input: Optional[str], timeout: float) -> str:
        line = shlex.join(self.runner.resolve(argv))
        if input is None:
            line += " </dev/null"
        else:
            if self.mark in input:
                raise InvalidInput("input contains the session marker")
            line += f" <<'{self.mark}'\n{input.rstrip(chr(10))}\n{self.mark}"
        rc, out, err = self._exchange(argv, line, timeout)
        if rc != 0 and rc not in accepted_codes(argv):
            raise CommandError(argv, self.runner.host, rc, err)
        return out

    def _exchange(self, argv: Argv, line: str, timeout: float) -> tuple[int, str, str]:
        script = f"{line}\nprintf '\\n%s %d\\n' {self.mark} \"$?\"\nprintf '%s\\n' {self.mark} >&2\n"
        try:
            self.process.stdin.write(script.encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the shell is gone: reading says why
        out_end = re.compile(rb"\n" + self.mark.encode() + rb" (\d+)\n$")
        err_end = (self.mark + "\n").encode()
        done = self._read_until(lambda out, err: out_end.search(out) and err.endswith(err_end), timeout)
        out, err = self.buffers[self.process.stdout], self.buffers[self.process.stderr]
        if not done:
            raise self._broken(argv, timeout)
        match = out_end.search(out)
        result = (int(match.group(1)), out[:match.start()].decode(errors="replace"),
                  err[:-len(err_end)].decode(errors="replace"))
        out.clear()
        err.clear()
        return result

    def _read_until(self, finished, timeout: float) -> bool:
        import selectors

        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            for stream in self.buffers:
                selector.register(stream, selectors.EVENT_READ)
            while not finished(*self.buffers.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.get_map():
                    return False
                for key, _ in selector.select(remaining):
                    data = os.read(key.fd, 65536)
                    if data:
                        self.buffers[key.fileobj] += data
                    else:
                        selector.unregister(key.fileobj)
        return True

    def _broken(self, argv: Argv, timeout: float) -> CommandError:
        """The shell ended or stopped answering: why, as a CommandError."""
        try:
            rc = self.process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return CommandError(argv, self.runner.host, None, f"no answer within {timeout:g} s (TIMEOUT)")
        stderr = self.buffers[self.process.stderr].decode(errors="replace")
        if rc == LOCK_BUSY_RC:
            return _lock_error(self.runner)
        return CommandError(["ssh"], self.runner.host, rc, stderr, hint=_ssh_hint(rc))

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.process.wait(timeout=self.runner.cfg.timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


def _execute(argv: list[str], original: Argv, host: str, timeout: float,
             ok_codes: tuple[int, ...] = (), input: Optional[str] = None) -> str:
    try:
        done = subprocess.run(argv, input=input.encode() if input is not None else None,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, env=_child_env())
    except FileNotFoundError:
        raise CommandError(original, host, 127, f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise CommandError(original, host, None, f"no answer within {timeout:g} s (TIMEOUT)") from None
    if done.returncode != 0 and done.returncode not in ok_codes:
        raise CommandError(original, host, done.returncode, done.stderr.decode(errors="replace"))
    return done.stdout.decode(errors="replace")


def _sudo_hint(stderr: str, program: str, host: str) -> str:
    if "sudo: a password is required" in stderr or "sudo: a terminal is required" in stderr:
        return f"sudo on {host} asks for a password: add a NOPASSWD sudoers rule for {program} (see README)"
    return ""


def _ssh_hint(rc: Optional[int]) -> str:
    return "cannot reach host over ssh" if rc == 255 else ""


def _child_env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C", "LVM_SUPPRESS_FD_WARNINGS": "1"}
