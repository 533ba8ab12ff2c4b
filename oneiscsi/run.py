"""The only module that starts processes.

A `Runner` runs Commands (command.py) on one host: directly when the host is
this machine, otherwise through ssh, where the command line is made with
`shlex.join` and nowhere else. The Runner replaces a command's program with
its configured command line (TGTADM="tgtadm -C 7") and puts the SUDO prefix
before privileged ones.

A `Session` runs any number of commands on a host over one ssh connection: a
shell on the host reads the quoted commands one by one, and each answer ends
with a random marker carrying the exit status. A session may hold lock files
of the host (flock): LOCK_FILE, so that what it reads and what it then
changes cannot interleave with another one-iscsi, and an image's own lock,
held while the image is written.
"""
from __future__ import annotations

import io
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator, Optional, Sequence, TextIO, TypeVar, Union

from .command import Command
from .config import Config, hostname
from .errors import CommandError, InvalidInput, OneIscsiError, shown

T = TypeVar("T")
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
READY = b"ready\n"  # what a command fed by Session.finish says before it reads its input
LOCK_BUSY_RC = 75  # flock -E: the lock could not be had in time
FIRST_LOCK_FD = 8  # the descriptors of the remote shell that hold lock files
# what ssh says when sshd drops a connection it has no room for (MaxStartups): tried again, with
# back-off, until TIMEOUT
_SSH_BUSY = ("kex_exchange_identification", "Connection reset by", "Connection closed by")
_SSH_HOST = re.compile(r"[A-Za-z0-9_\[][A-Za-z0-9_.@:%\[\]-]*")


@dataclass(frozen=True)
class FileRange:
    """Bytes of an open file, to be sent by the kernel (sendfile) as they are."""
    fd: int
    offset: int
    length: int


Stream = Iterable[Union[bytes, FileRange]]


def is_local(host: str) -> bool:
    me = hostname()
    return host in LOCAL_NAMES or host in (me, me.split(".")[0])


def check_host(host: str) -> str:
    if not _SSH_HOST.fullmatch(host or ""):
        raise InvalidInput(f"invalid host name {shown(repr(host))}")
    return host


def failure(cmd: Command, host: str, rc: Optional[int], stderr: str, hint: str = "") -> OneIscsiError:
    """The error of a failed command, as the command itself explains it."""
    error = CommandError(cmd.program, host, rc, stderr, hint)
    return (cmd.explain(error) if cmd.explain else None) or error


class Runner:
    """Runs commands on one host, honouring the configuration and --dry-run."""

    def __init__(self, host: str, cfg: Config, dry_run: bool = False, out: TextIO = None):
        self.host = check_host(host)
        self.cfg = cfg
        self.dry_run = dry_run
        self.local = is_local(host)
        self.out = out
        self._ahead: Optional[_RemoteChannel] = None  # started by connect_ahead(), not yet used

    def connect_ahead(self) -> "Runner":
        """Start connecting to the host now: ssh's handshake runs while this
        process does the rest of its work, and the first session takes the
        connection. close() ends it if no session did."""
        if not self.local and not self.dry_run and self._ahead is None:
            self._ahead = _RemoteChannel(self)
        return self

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.kill()
            self._ahead = None

    def _connection(self) -> "_RemoteChannel":
        """The connection started ahead, else a new one."""
        channel, self._ahead = self._ahead or _RemoteChannel(self), None
        return channel

    def resolve(self, cmd: Command) -> list[str]:
        """The argv as it runs on the host: configured command, sudo prefix."""
        prefix = self.cfg.tool(cmd.program)
        argv = [*prefix, *cmd.argv[1:]] if prefix else list(cmd.argv)
        needs_sudo = cmd.privileged and (not self.local or os.geteuid() != 0)
        return [*(self.cfg.sudo if needs_sudo else ()), *argv]

    def ssh_argv(self, remote_command: str, options: Sequence[str] = ()) -> list[str]:
        # below TIMEOUT, so that an unreachable host is ssh's own message, not our timeout
        connect = max(1, math.ceil(min(self.cfg.connect_timeout, self.cfg.timeout)))
        return [*self.cfg.ssh, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect}", *options,
                "--", self.host, remote_command]

    @contextmanager
    def session(self, lock: bool = False, hold: Sequence[str] = ()) -> Iterator["Session"]:
        """Commands on this host over one connection. The lock files in hold,
        then (with lock) the host's LOCK_FILE, are taken at once and held
        until the session ends (LOCK_FILE until release_lock())."""
        session = Session(self, [*hold, *([self.cfg.lock_file] if lock else [])])
        try:
            yield session
        finally:
            session.close()

    def run(self, cmd: Command) -> str:
        """Run one command; its stdout."""
        return self.run_all([cmd])

    def run_all(self, commands: Sequence[Command]) -> str:
        """Run commands in order in one session, stopping at the first failure.
        Returns their stdout, concatenated."""
        if not commands:
            return ""
        with self.session() as session:
            return "".join(session.run(cmd) for cmd in commands)

    def print_dry_run(self, cmd: Command) -> None:
        resolved = cmd.masked(self.resolve(cmd))
        print(shlex.join(resolved if self.local else self.ssh_argv(shlex.join(resolved))),
              file=self.out or sys.stdout)

    @contextmanager
    def output_stream(self, cmd: Command) -> Iterator[BinaryIO]:
        """A command's stdout as a stream; its exit status is checked when the
        stream is closed."""
        if self.dry_run and not cmd.query:
            self.print_dry_run(cmd)
            yield io.BytesIO()
            return
        resolved = self.resolve(cmd)
        process = self._start(cmd, resolved if self.local else self.ssh_argv(shlex.join(resolved)),
                              stdin=None, stdout=subprocess.PIPE)
        try:
            yield process.stdout
        except BaseException:
            _kill(process)
            raise
        finally:
            process.stdout.close()
        self._finish(process, cmd)

    def feed(self, cmd: Command, stream: Stream, timeout: Optional[float] = None) -> None:
        """Run a command on the host with stream as its stdin (one ssh session,
        with COPY_SSH_OPTIONS: it carries image data), within timeout (COPY_TIMEOUT)."""
        import threading

        if self.dry_run:
            self.print_dry_run(cmd)
            return
        resolved = self.resolve(cmd)
        remote = self.ssh_argv(shlex.join(resolved), self.cfg.copy_ssh_options)
        process = self._start(cmd, resolved if self.local else remote, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
        process.timeout = timeout or self.cfg.copy_timeout
        watchdog = threading.Timer(process.timeout, lambda: _kill(process, timed_out=True))
        watchdog.start()
        try:
            _send(process.stdin.fileno(), stream)
            process.stdin.close()
        except BrokenPipeError:
            pass  # the command stopped reading: its exit status says why
        except BaseException:
            self._end_input(process)
            raise
        finally:
            watchdog.cancel()
        self._finish(process, cmd)

    def _end_input(self, process: subprocess.Popen) -> None:
        """Stop a command fed by feed(): its input ends, so the writer on the
        host ends too, before anything (a rollback) touches what it wrote;
        killed if it does not end within TIMEOUT."""
        try:
            process.stdin.close()
        except OSError:
            pass
        _wait(process, self.cfg.timeout)
        _kill(process)

    def _start(self, cmd: Command, argv: list[str], stdin, stdout) -> subprocess.Popen:
        import tempfile

        errors = tempfile.TemporaryFile()  # a file, not a pipe: it can never fill up and block
        try:
            process = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=errors, env=_child_env(),
                                       start_new_session=True)  # its children can be stopped with it
        except FileNotFoundError:
            errors.close()
            raise CommandError(argv[0], self.host, 127, f"{argv[0]}: command not found") from None
        process.errors = errors
        process.timed_out = False
        return process

    def _finish(self, process: subprocess.Popen, cmd: Command) -> None:
        timeout = getattr(process, "timeout", self.cfg.copy_timeout)
        try:
            rc = _wait(process, timeout)
        except BaseException:
            _kill(process)
            raise
        if rc is None:
            _kill(process, timed_out=True)
            rc = process.returncode
        if process.stdin:
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass  # the exit status says why it stopped reading
        process.errors.seek(0)
        stderr = process.errors.read().decode(errors="replace")
        process.errors.close()
        if process.timed_out:
            raise CommandError(cmd.program, self.host, None, f"no end within {timeout:g} s (COPY_TIMEOUT)")
        if rc < 0:  # the process here was killed: ssh, or the command itself
            raise CommandError("ssh" if not self.local else cmd.program, self.host, rc,
                               f"killed by {signal.Signals(-rc).name}")
        if rc != 0 and rc not in cmd.accept:
            raise failure(cmd, self.host, rc, stderr, hint="" if self.local else _ssh_hint(rc))


class Session:
    """Commands on one host: over ssh through one shell on the host, locally
    one process each. Opened on the first command that really runs."""

    def __init__(self, runner: Runner, locks: Sequence[str]):
        self.runner = runner
        self.host = runner.host
        self.cfg = runner.cfg
        self.locks = list(locks)
        self._channel = None
        if locks and not runner.dry_run:  # the lock is the point: take it now, fail now
            self._open()

    def _open(self):
        if self._channel is None:
            self._channel = _connect(self.runner, self.locks)
        return self._channel

    def release_lock(self) -> None:
        """Let go of LOCK_FILE, keeping the other locks of the session."""
        if self.cfg.lock_file in self.locks:
            self.locks.remove(self.cfg.lock_file)
            if self._channel is not None:
                self._channel.release(self.cfg.lock_file)

    def run(self, cmd: Command, timeout: Optional[float] = None) -> str:
        """Run one command; its stdout. A longer timeout than TIMEOUT may be given.
        Under --dry-run a command that changes something is printed instead.
        A connection that broke (it timed out, died, or a signal came) is
        dropped: the next command, e.g. a rollback's, gets a fresh one."""
        if self.runner.dry_run and not cmd.query:
            self.runner.print_dry_run(cmd)
            return ""
        channel = self._open()
        try:
            return channel.run(cmd, timeout or self.cfg.timeout)
        finally:
            if channel.broken:
                channel.kill()
                self._channel = None

    def finish(self, cmd: Command, stream: Stream, timeout: float) -> None:
        """Run cmd as the last command of the session, stream as its stdin
        (the image data goes over the session's own connection), within
        timeout. cmd says `ready` before it reads its input. The session
        ends with it: the lock files stay held until it is done."""
        if self.runner.dry_run:
            self.runner.print_dry_run(cmd)
            return
        channel = self._open()
        self._channel = None
        try:
            channel.finish(cmd, stream, timeout)
        except BaseException:
            channel.close()
            if self.locks:  # held again for what follows a failure (a rollback), if they can be had
                try:
                    self._open()
                except OneIscsiError:
                    pass
            raise
        channel.close()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def _connect(runner: Runner, locks: Sequence[str]):
    if runner.local:
        return _LocalChannel(runner, locks)

    def attempt() -> Optional[_RemoteChannel]:
        try:
            return runner._connection().open(locks)
        except CommandError as err:
            if err.program == "ssh" and any(text in err.stderr for text in _SSH_BUSY):
                return None
            raise

    # once the time is up, a last try: its refusal is the error
    return _poll(attempt, runner.cfg.timeout, first=0.1, longest=1.0) or runner._connection().open(locks)


def _poll(attempt: Callable[[], Optional[T]], timeout: float, first: float, longest: float) -> Optional[T]:
    """attempt's first result that is not None, trying for up to timeout
    seconds with a growing pause, spread at random (others wait for the same
    lock or sshd); None if the time ran out. The one bounded wait here."""
    import random

    deadline = time.monotonic() + timeout
    delay = first
    while (result := attempt()) is None:
        pause = delay * (0.5 + random.random())
        if time.monotonic() + pause > deadline:
            return None
        time.sleep(pause)  # between the attempts of a bounded poll
        delay = min(2 * delay, longest)
    return result


class _LocalChannel:
    broken = False  # each command is a process of its own

    def __init__(self, runner: Runner, locks: Sequence[str]):
        self.runner = runner
        self.lock_files = {}
        try:
            for path in locks:
                self.lock_files[path] = _take_local_lock(runner, path)
        except BaseException:
            self.close()
            raise

    def run(self, cmd: Command, timeout: float) -> str:
        return _execute(cmd, self.runner.resolve(cmd), self.runner.host, timeout)

    def release(self, path: str) -> None:
        self.lock_files.pop(path).close()  # closing the file releases its flock

    def finish(self, cmd: Command, stream: Stream, timeout: float) -> None:
        self.runner.feed(cmd, stream, timeout)

    def close(self) -> None:
        for path in list(self.lock_files):
            self.release(path)

    kill = close


def _take_local_lock(runner: Runner, path: str):
    import fcntl

    try:
        lock_file = open(path, "a")
    except OSError as err:
        raise OneIscsiError(f"cannot open lock file {path} on {runner.host}: {err.strerror} (LOCK_FILE)") from None

    def attempt() -> Optional[TextIO]:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        return lock_file

    if _poll(attempt, runner.cfg.lock_timeout, first=0.01, longest=0.2) is None:
        lock_file.close()
        raise _lock_error(runner, path)
    return lock_file


def _lock_error(runner: Runner, path: str) -> OneIscsiError:
    return OneIscsiError(f"lock {path} on {runner.host} is held by another one-iscsi "
                         f"for more than {runner.cfg.lock_timeout:g} s (LOCK_TIMEOUT)")


class _RemoteChannel:
    """A shell on the host reading commands from our pipe. After each command
    it prints a marker with the exit status to stdout and a marker to stderr.
    Made, ssh starts connecting; open() waits for the shell's first answer."""

    def __init__(self, runner: Runner):
        self.runner = runner
        self.broken = False  # an exchange began and did not end: what the shell says next is not known
        self.mark = f"one-iscsi-{os.urandom(12).hex()}"
        self.lock_fds: dict[str, int] = {}
        shell = ["env", "LC_ALL=C", "sh"]  # messages in English, whatever the host's locale
        # COPY_SSH_OPTIONS: a session may carry image data (Session.finish)
        self.process = subprocess.Popen(runner.ssh_argv(shlex.join(shell), runner.cfg.copy_ssh_options),
                                        stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env())
        self.buffers = {self.process.stdout: bytearray(), self.process.stderr: bytearray()}

    def open(self, locks: Sequence[str]) -> "_RemoteChannel":
        """The connection, once the shell answers, holding the lock files."""
        try:
            # ssh gives up connecting after TIMEOUT (ConnectTimeout) and says why; then the shell answers
            self._exchange("ssh", ":", 2 * self.runner.cfg.timeout)
            for path in locks:
                self._take(path)
        except BaseException:
            self.kill()
            raise
        return self

    def _take(self, path: str) -> None:
        """Open path on a descriptor of the shell and flock it: held until
        the descriptor is closed (release) or the shell ends."""
        cfg = self.runner.cfg
        fd = FIRST_LOCK_FD + len(self.lock_fds)
        rc, _, err = self._exchange("flock", f"command exec {fd}>>{shlex.quote(path)} && "
                                    f"flock -w {cfg.lock_timeout:g} -E {LOCK_BUSY_RC} {fd}",
                                    cfg.timeout + cfg.lock_timeout)
        if rc == LOCK_BUSY_RC:
            raise _lock_error(self.runner, path)
        if rc != 0:
            raise OneIscsiError(f"cannot take lock file {path} on {self.runner.host}: "
                                f"{err.strip() or f'exit {rc}'} (LOCK_FILE)")
        self.lock_fds[path] = fd

    def release(self, path: str) -> None:
        self._exchange("flock", f"exec {self.lock_fds.pop(path)}>&-", self.runner.cfg.timeout)

    def run(self, cmd: Command, timeout: float) -> str:
        line = shlex.join(self.runner.resolve(cmd))
        if cmd.input is None:
            line += " </dev/null"
        else:
            if self.mark in cmd.input:
                raise InvalidInput("input contains the session marker")
            line += f" <<'{self.mark}'\n{cmd.input.rstrip(chr(10))}\n{self.mark}"
        rc, out, err = self._exchange(cmd.program, line, timeout)
        if rc != 0 and rc not in cmd.accept:
            raise failure(cmd, self.runner.host, rc, err)
        return out

    def finish(self, cmd: Command, stream: Stream, timeout: float) -> None:
        """exec cmd in place of the shell, once it says `ready` send stream as
        its stdin, and wait for its end. The shell has read nothing past the
        exec line when cmd starts: what follows is cmd's alone."""
        import threading

        cfg = self.runner.cfg
        self.broken = True
        self._write(f"exec {shlex.join(self.runner.resolve(cmd))}\n".encode())
        if not self._read_until(lambda out, err: out.startswith(READY), cfg.timeout):
            raise self._broken(cmd.program, cfg.timeout)
        timed_out = threading.Event()
        watchdog = threading.Timer(timeout, lambda: (timed_out.set(), self.process.kill()))
        watchdog.start()
        try:
            _send(self.process.stdin.fileno(), stream)
        except BrokenPipeError:
            pass  # cmd stopped reading: its exit status says why
        except BaseException:  # the input ends, so cmd ends too, before a rollback touches what it wrote
            watchdog.cancel()
            self.close()
            raise
        self.process.stdin.close()
        self._read_until(lambda out, err: False, timeout)  # to the end of its output: it has ended
        watchdog.cancel()
        rc = _wait(self.process, cfg.timeout)
        if rc is None or timed_out.is_set():
            self.kill()
            raise CommandError(cmd.program, self.runner.host, None, f"no end within {timeout:g} s (COPY_TIMEOUT)")
        if rc < 0:  # ssh here was killed
            raise CommandError("ssh", self.runner.host, rc, f"killed by {signal.Signals(-rc).name}")
        if rc != 0 and rc not in cmd.accept:
            err = self.buffers[self.process.stderr].decode(errors="replace")
            raise failure(cmd, self.runner.host, rc, err, hint=_ssh_hint(rc))

    def _write(self, data: bytes) -> None:
        try:
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the shell is gone: reading says why

    def _exchange(self, program: str, line: str, timeout: float) -> tuple[int, str, str]:
        script = f"{line}\nprintf '\\n%s %d\\n' {self.mark} \"$?\"\nprintf '%s\\n' {self.mark} >&2\n"
        self.broken = True
        self._write(script.encode())
        out_end = re.compile(rb"\n" + self.mark.encode() + rb" (\d+)\n$")
        err_end = (self.mark + "\n").encode()
        done = self._read_until(lambda out, err: out_end.search(out) and err.endswith(err_end), timeout)
        out, err = self.buffers[self.process.stdout], self.buffers[self.process.stderr]
        if not done:
            raise self._broken(program, timeout)
        match = out_end.search(out)
        result = (int(match.group(1)), out[:match.start()].decode(errors="replace"),
                  err[:-len(err_end)].decode(errors="replace"))
        out.clear()
        err.clear()
        self.broken = False
        return result

    def _read_until(self, finished, timeout: float) -> bool:
        import selectors

        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            for stream in self.buffers:
                if not stream.closed:
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

    def _broken(self, program: str, timeout: float) -> OneIscsiError:
        """The shell ended or stopped answering: why."""
        rc = _wait(self.process, 0.5)
        if rc is None:
            self.process.kill()
            self.process.wait()
            return CommandError(program, self.runner.host, None, f"no answer within {timeout:g} s (TIMEOUT)")
        stderr = self.buffers[self.process.stderr].decode(errors="replace")
        return CommandError("ssh", self.runner.host, rc, stderr, hint=_ssh_hint(rc))

    def kill(self) -> None:
        """End the connection now: sshd then closes the channel on the host."""
        self.process.kill()
        self.close()

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        if _wait(self.process, self.runner.cfg.timeout) is None:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


def _execute(cmd: Command, argv: list[str], host: str, timeout: float) -> str:
    try:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE if cmd.input is not None else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env())
    except FileNotFoundError:
        raise CommandError(cmd.program, host, 127, f"{argv[0]}: command not found") from None
    deadline = time.monotonic() + timeout
    try:
        output = _communicate(process, cmd.input.encode() if cmd.input is not None else None, deadline)
        rc = _wait(process, deadline - time.monotonic()) if output is not None else None
    except BaseException:
        _stop(process)
        raise
    finally:
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    if rc is None:
        _stop(process)
        raise CommandError(cmd.program, host, None, f"no answer within {timeout:g} s (TIMEOUT)")
    out, err = output
    if rc != 0 and rc not in cmd.accept:
        raise failure(cmd, host, rc, err.decode(errors="replace"))
    return out.decode(errors="replace")


def _communicate(process: subprocess.Popen, data: Optional[bytes], deadline: float) -> Optional[tuple[bytes, bytes]]:
    """process's stdout and stderr to their end, data written to its stdin;
    None if the deadline came first. (Popen.communicate with a timeout then
    waits for the exit with sleeps; _wait does not.)"""
    import selectors

    chunks: dict = {process.stdout: [], process.stderr: []}
    with selectors.DefaultSelector() as selector:
        for stream in chunks:
            selector.register(stream, selectors.EVENT_READ)
        pending = memoryview(data or b"")
        if data is not None:
            selector.register(process.stdin, selectors.EVENT_WRITE)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            for key, _ in selector.select(remaining):
                if key.fileobj is process.stdin:
                    try:
                        pending = pending[os.write(key.fd, pending[:65536]):]
                    except BrokenPipeError:
                        pending = pending[:0]  # it stopped reading: its exit status says why
                    if not pending:
                        selector.unregister(process.stdin)
                        process.stdin.close()
                elif block := os.read(key.fd, 65536):
                    chunks[key.fileobj].append(block)
                else:
                    selector.unregister(key.fileobj)
    return b"".join(chunks[process.stdout]), b"".join(chunks[process.stderr])


def _stop(process: subprocess.Popen, grace: float = 2) -> None:
    """Stop a command: SIGTERM first, which timeout(1) and sudo pass on to
    what they run; SIGKILL if it is still there after grace seconds."""
    process.terminate()
    if _wait(process, grace) is None:
        process.kill()
        process.wait()


def _kill(process: subprocess.Popen, timed_out: bool = False) -> None:
    """Kill a process started by Runner._start and everything it started."""
    process.timed_out = process.timed_out or timed_out
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _send(fd: int, stream: Stream) -> None:
    """Write stream to fd: bytes as they are, FileRanges by the kernel."""
    for item in stream:
        if isinstance(item, FileRange):
            offset, end = item.offset, item.offset + item.length
            while offset < end:
                sent = os.sendfile(fd, item.fd, offset, end - offset)
                if not sent:
                    raise OneIscsiError(f"the image file ended at byte {offset}, before its end was sent")
                offset += sent
        else:
            view = memoryview(item)
            while view:
                view = view[os.write(fd, view):]


def _wait(process: subprocess.Popen, timeout: float) -> Optional[int]:
    """The exit status of process, None if it has not ended within timeout;
    woken by the end itself (a pidfd), not by polling."""
    if process.returncode is not None:
        return process.returncode
    import select

    try:
        pidfd = os.pidfd_open(process.pid)
    except ProcessLookupError:  # already reaped by someone else's wait
        return process.wait()
    except OSError:  # no pidfds (a kernel before 5.3, a seccomp filter): Popen's own bounded wait
        try:
            return process.wait(max(timeout, 0))
        except subprocess.TimeoutExpired:
            return None
    try:
        if not select.select([pidfd], [], [], max(timeout, 0))[0]:
            return None
    finally:
        os.close(pidfd)
    return process.wait()


def _ssh_hint(rc: Optional[int]) -> str:
    return "cannot reach host over ssh" if rc == 255 else ""


def _child_env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C", "LVM_SUPPRESS_FD_WARNINGS": "1"}
