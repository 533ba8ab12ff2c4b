"""Fixtures: a private tgtd, a loopback sshd, and the CLI run in-process.

Daemons are started per test session on free ports and stopped by PID at the
end, also when tests fail. Waits poll with a bound; nothing sleeps blindly.
"""
from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from oneiscsi.cli import main

DATA = Path(__file__).parent / "data"


def wait_for(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll check() until it is true, failing after timeout seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        time.sleep(delay)  # back-off between polls of a bounded wait
        delay = min(delay * 2, 0.2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def quiet(argv: list[str], timeout: float = 30, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


@dataclass
class Tgtd:
    control: int
    port: int
    process: subprocess.Popen

    def tgtadm(self, *args: str) -> subprocess.CompletedProcess:
        return quiet(["tgtadm", "-C", str(self.control), *args])

    @property
    def env(self) -> dict[str, str]:
        return {"ONE_ISCSI_TGTADM": f"tgtadm -C {self.control}",
                "ONE_ISCSI_TGT_ADMIN": f"tgt-admin -C {self.control}"}

    @property
    def portal(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, iqn: str, lun: int = 1) -> str:
        return f"iscsi://{self.portal}/{iqn}/{lun}"

    def target_ids(self) -> list[int]:
        out = self.tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target").stdout
        return [int(line.split()[1].rstrip(":")) for line in out.splitlines() if line.startswith("Target ")]

    def delete_all_targets(self) -> None:
        for tid in self.target_ids():
            self.tgtadm("--lld", "iscsi", "--op", "delete", "--force", "--mode", "target", "--tid", str(tid))

    def stop(self) -> None:
        # tgtd ignores SIGTERM: empty it, ask it to exit, SIGKILL if it does not.
        self.delete_all_targets()
        self.tgtadm("--op", "delete", "--mode", "system")
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start_tgtd() -> Tgtd:
    for _attempt in range(5):
        control = random.randint(1000, 30000)
        port = free_port()
        process = subprocess.Popen(
            ["tgtd", "-f", "-C", str(control), "--iscsi", f"portal=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        daemon = Tgtd(control, port, process)
        try:
            wait_for(lambda: process.poll() is not None
                     or daemon.tgtadm("--op", "show", "--mode", "sys").returncode == 0,
                     what="tgtd ready")
        except TimeoutError:
            process.kill()
            process.wait()
            continue
        portals = daemon.tgtadm("--op", "show", "--mode", "portal").stdout
        if process.poll() is None and f"127.0.0.1:{port}," in portals:
            return daemon
        daemon.stop()  # port or control socket taken by someone else: try others
    raise RuntimeError("could not start a private tgtd")


@pytest.fixture(scope="session")
def tgtd_daemon():
    daemon = start_tgtd()
    yield daemon
    daemon.stop()


@pytest.fixture
def tgtd(tgtd_daemon, monkeypatch, tmp_path):
    """The session's tgtd, empty at the start and the end of the test; the
    CLI's tgtadm calls point at it, its config files and lock go to the test's
    own folder."""
    tgtd_daemon.delete_all_targets()
    for key, value in tgtd_daemon.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ONE_ISCSI_CONF_DIR", str(tmp_path / "tgt-conf.d" / "one-iscsi"))
    monkeypatch.setenv("ONE_ISCSI_LOCK_FILE", str(tmp_path / "one-iscsi.lock"))
    yield tgtd_daemon
    tgtd_daemon.delete_all_targets()


@dataclass
class Sshd:
    port: int
    alias: str
    config: Path
    directory: Path
    process: subprocess.Popen

    @property
    def ssh(self) -> str:
        return shlex.join(["ssh", "-F", str(self.config)])


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A loopback sshd with throwaway keys; clients reach it as host alias
    `tgtserver` through the ssh config in SSH."""
    directory = tmp_path_factory.mktemp("sshd")
    os.makedirs("/run/sshd", exist_ok=True)
    for name in ("host_key", "client_key"):
        quiet(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)]).check_returncode()
    # readable by any user the tests log in as (sshd reads it as that user)
    keys = Path(tempfile.mkdtemp(prefix="one-iscsi-keys-"))
    keys.chmod(0o755)
    shutil.copy(directory / "client_key.pub", keys / "authorized_keys")
    (keys / "authorized_keys").chmod(0o644)
    port = free_port()
    (directory / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {directory}/host_key\n"
        f"AuthorizedKeysFile {keys}/authorized_keys\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "AcceptEnv ONE_ISCSI_TEST_HOST\n"
        f"PidFile {directory}/sshd.pid\nLogLevel ERROR\n")
    config = directory / "ssh_config"
    # every alias reaches the same sshd; ONE_ISCSI_TEST_HOST tells a command which one it is on
    config.write_text("".join(f"Host {alias}\n  SetEnv ONE_ISCSI_TEST_HOST={alias}\n"
                              for alias in ("tgtserver", "node1", "node2")) +
        f"Host *\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
        f"  IdentityFile {directory}/client_key\n  IdentitiesOnly yes\n  BatchMode yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
    log = open(directory / "sshd.log", "w")
    process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(directory / "sshd_config")],
                               stdout=subprocess.DEVNULL, stderr=log)
    daemon = Sshd(port, "tgtserver", config, directory, process)
    try:
        wait_for(lambda: process.poll() is not None or quiet(
            ["ssh", "-F", str(config), "tgtserver", "true"], timeout=10).returncode == 0,
            timeout=20, what="sshd ready")
        assert process.poll() is None, (directory / "sshd.log").read_text()
        yield daemon
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        log.close()
        shutil.rmtree(keys, ignore_errors=True)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No ONE_ISCSI_* setting of the machine running the tests leaks into them."""
    for key in list(os.environ):
        if key.startswith("ONE_ISCSI_"):
            monkeypatch.delenv(key)


@dataclass
class Result:
    rc: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch) -> Callable[..., Result]:
    """Run `one-iscsi ARGS` in this process; returns exit status, stdout, stderr."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        rc = main(list(args))
        captured = capsys.readouterr()
        return Result(rc, captured.out, captured.err)

    return run


@dataclass
class HttpServer:
    root: Path
    port: int

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@pytest.fixture
def http_server(tmp_path):
    """A loopback HTTP server for image URLs, serving a folder of the test."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield HttpServer(root, server.server_address[1])
    server.shutdown()
    server.server_close()
