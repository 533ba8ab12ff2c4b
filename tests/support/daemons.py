"""The real daemons of the tests and the benchmarks: a private tgtd and a
loopback sshd, each started on free ports and stopped by PID at the end of
its context manager, also when what runs inside fails."""
from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from .commands import quiet
from .ports import free_port
from .wait import wait_for

HOSTS = ("tgtserver", "node1", "node2", "front-end")  # ssh aliases, all of the same loopback sshd


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

    def kill(self) -> None:
        """SIGKILL to its PID: for thousands of targets, which tgtd deletes
        slowly (a private daemon without sessions loses nothing)."""
        self.process.kill()
        self.process.wait(timeout=10)

    def remove_control_socket(self) -> None:
        """What a killed tgtd leaves behind in /var/run/tgtd."""
        if self.process.poll() is None:
            return
        for leftover in (f"/var/run/tgtd/socket.{self.control}", f"/var/run/tgtd/socket.{self.control}.lock"):
            if os.path.exists(leftover):
                os.unlink(leftover)


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


@contextmanager
def tgtd(kill: bool = False) -> Iterator[Tgtd]:
    """A private tgtd on a free loopback port, stopped at the end (Tgtd.stop,
    or Tgtd.kill with kill); its control socket goes too."""
    daemon = start_tgtd()
    try:
        yield daemon
    finally:
        if kill:
            daemon.kill()
        else:
            daemon.stop()
        daemon.remove_control_socket()


@contextmanager
def session_on(daemon: Tgtd, iqn: str) -> Iterator[None]:
    """A live session to target iqn while inside: qemu-nbd reading its LUN 1 through libiscsi."""
    from oneiscsi import tgt

    def logged_in() -> bool:
        shown = tgt.parse_show(daemon.tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target").stdout)
        return any(target.sessions for target in shown if target.iqn == iqn)

    nbd = subprocess.Popen(["qemu-nbd", "-r", "-f", "raw", "-b", "127.0.0.1", "-p", str(free_port()),
                            daemon.url(iqn)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(logged_in, what=f"a session to {iqn}")
        yield
    finally:
        nbd.kill()
        nbd.wait()


@dataclass
class Sshd:
    port: int
    alias: str         # the target server's alias; every alias of HOSTS reaches this sshd
    config: Path       # the clients' ssh config
    directory: Path
    process: subprocess.Popen

    @property
    def ssh(self) -> str:
        """The ssh command line that reaches it (ONE_ISCSI_SSH)."""
        return shlex.join(["ssh", "-F", str(self.config)])


@contextmanager
def sshd(directory: Path, max_startups: Optional[int] = None) -> Iterator[Sshd]:
    """A loopback sshd with throwaway keys, its files in directory; clients
    reach it as the aliases of HOSTS through the ssh config in Sshd.ssh. Each
    alias sets ONE_ISCSI_TEST_HOST=<alias>, so that a command knows which host
    it is on (fake-iscsiadm keeps its state per host). max_startups: sshd's
    MaxStartups, for many connections at once (the benchmarks)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.makedirs("/run/sshd", exist_ok=True)
    for name in ("host_key", "client_key"):
        quiet(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)]).check_returncode()
    # readable by any user the tests log in as (sshd reads it as that user)
    keys = Path(tempfile.mkdtemp(prefix="one-iscsi-keys-"))
    try:
        keys.chmod(0o755)
        shutil.copy(directory / "client_key.pub", keys / "authorized_keys")
        (keys / "authorized_keys").chmod(0o644)
        port = free_port()
        (directory / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {directory}/host_key\n"
            f"AuthorizedKeysFile {keys}/authorized_keys\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "AcceptEnv ONE_ISCSI_TEST_HOST\n" + (f"MaxStartups {max_startups}\n" if max_startups else "") +
            f"PidFile {directory}/sshd.pid\nLogLevel ERROR\n")
        config = directory / "ssh_config"
        config.write_text("".join(f"Host {alias}\n  SetEnv ONE_ISCSI_TEST_HOST={alias}\n" for alias in HOSTS) +
                          f"Host *\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
                          f"  IdentityFile {directory}/client_key\n  IdentitiesOnly yes\n  BatchMode yes\n"
                          "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
        with open(directory / "sshd.log", "w") as log:
            process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(directory / "sshd_config")],
                                       stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_for(lambda: process.poll() is not None or quiet(
                ["ssh", "-F", str(config), HOSTS[0], "true"], timeout=10).returncode == 0,
                timeout=20, what="sshd ready")
            if process.poll() is not None:
                raise RuntimeError(f"sshd did not start: {(directory / 'sshd.log').read_text()}")
            yield Sshd(port, HOSTS[0], config, directory, process)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(keys, ignore_errors=True)
