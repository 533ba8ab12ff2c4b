"""A real hypervisor host: a Debian guest under qemu, driven by one-iscsi over ssh.

`guest` boots the cached image of guest_image.py under qemu with plain
emulation (TCG: the nested KVM of the project's machines cannot boot a normal
kernel) and qemu's user network, with the guest's sshd forwarded to a free
loopback port. one-iscsi reaches it as host `guest` and logs in as oneadmin,
who runs iscsiadm through sudo; the tests inspect it as root (`Guest.root`).
Real in the guest: the kernel's iSCSI initiator, iscsid, udev's
/dev/disk/by-path links, sshd, sudo. The target server is the session's tgtd
(tests/conftest.py, portal 127.0.0.1:PORT), reached by the front-end over the
loopback sshd as `tgtserver`.

How the guest reaches that tgtd: qemu's user network turns the guest's
connections to 10.0.2.2 into connections to this machine's 127.0.0.1. Inside
the guest `tgtserver` resolves to 127.0.0.1, where a relay
(systemd-socket-proxyd) carries the guest's 127.0.0.1:PORT to 10.0.2.2:PORT.
one-iscsi uses PORTAL_PORT=PORT and records the node as `tgtserver:PORT`, so
the guest's by-path links read `ip-tgtserver:PORT-iscsi-<IQN>-lun-1`.

The guest can also be a target server itself, on the kernel's LIO target
(guest_image.py), driven by one-iscsi as `guest` (oneadmin, sudo). Its storage
is a second virtio disk, /dev/vdb, a sparse raw file of 2 GiB in the fixture's
folder, which the fixture makes, after boot, the LVM volume group
`Guest.lio_vg` (vg-lio). LIO listens on 0.0.0.0:3260 once a portal is made;
the guest sees its own portal as `guest:3260` (/etc/hosts maps `guest` to
127.0.1.1), and qemu forwards a free loopback port of this machine,
`Guest.lio_portal_port`, to it, so this machine's initiators reach its LUNs at
127.0.0.1:lio_portal_port. Not by discovery: SendTargets answers them with the
guest's own address, 10.0.2.15:3260, which this machine cannot reach.

qemu is killed by PID at the end of the session, also when tests fail.
A test that fails reports the guest's state (console, tasks stuck in the
kernel, iscsid's log); a guest that cannot be reset after a test is booted
again, so that one hang fails one test, not every test after it.
"""
from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from support.commands import quiet
from support.ports import free_port
from support.wait import wait_for

from . import guest_image

BOOT_TIMEOUT = 240  # seconds; a boot takes about 20 s here, more on a busy machine
MEMORY_MB = 1024
LIO_PORT = 3260  # iSCSI, where LIO's portals listen in the guest
LIO_VG = "vg-lio"
LIO_DISK_SIZE = 2 * 1024 ** 3
# hung_task: a task stuck in the kernel for 20 s is named on the console (its stack goes to dmesg)
KERNEL_ARGS = ("root=/dev/vda rw console=ttyS0 panic=-1 quiet sysctl.kernel.hung_task_timeout_secs=20 "
               "systemd.mask=e2scrub_reap.service systemd.mask=systemd-networkd-wait-online.service")
VM_ROOT = "/var/lib/one/datastores"
CONTROL_SOCKET = "root.sock"  # of the shared ssh connection as root, in the fixture's folder


@dataclass
class Guest:
    qemu: list[str]  # the command line that boots it
    ssh_config: Path
    folder: Path
    lio_portal_port: int  # of this machine's loopback, forwarded to the guest's LIO_PORT
    relay_port: int  # the session's tgtd, which the guest reaches as tgtserver:relay_port
    lio_vg: str = LIO_VG  # on /dev/vdb, for LIO's block backstores
    process: Optional[subprocess.Popen] = None
    broken: str = ""  # why the guest is of no more use (booting it again failed)

    @property
    def console(self) -> Path:
        return self.folder / "console.log"

    def root(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a shell script in the guest as root (over a shared ssh connection)."""
        return quiet(["ssh", "-F", str(self.ssh_config), "guest-root", script], timeout=timeout)

    def reachable(self) -> bool:
        try:
            return self.root("true", timeout=30).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def sessions(self) -> list[str]:
        """IQNs of the guest's iSCSI sessions (`iscsiadm -m session`)."""
        return self._iqns("iscsiadm -m session", column=3)

    def nodes(self) -> list[str]:
        """IQNs of the guest's open-iscsi node records (`iscsiadm -m node`)."""
        return self._iqns("iscsiadm -m node", column=1)

    def _iqns(self, command: str, column: int) -> list[str]:
        done = self.root(command)
        if done.returncode == 21:  # no sessions / no records
            return []
        assert done.returncode == 0, done.stderr
        return sorted(line.split()[column] for line in done.stdout.splitlines())

    def exists(self, path: str) -> bool:
        return self.root(f"test -e {shlex.quote(path)} || test -L {shlex.quote(path)}").returncode == 0

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.console.read_text(errors="replace").splitlines()[-lines:])

    def boot(self) -> None:
        """Start qemu and wait for the guest's sshd; then the relay to the
        session's tgtd and, on the first boot, the volume group for LIO."""
        log = self.folder / "qemu.log"
        with open(log, "w") as handle:
            self.process = subprocess.Popen(self.qemu, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=handle)

        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"qemu exited ({self.process.returncode}): {log.read_text()}\n{self.tail()}")
            return self.reachable()

        try:  # each poll is an ssh: at most one a second while the guest boots
            wait_for(up, BOOT_TIMEOUT, "guest sshd reachable", longest=1.0)
        except TimeoutError as error:
            raise TimeoutError(f"{error}:\n{self.tail()}") from None
        relay = self.root(shlex.join([
            "systemd-run", "--unit=tgtserver-relay", f"--socket-property=ListenStream=127.0.0.1:{self.relay_port}",
            "/lib/systemd/systemd-socket-proxyd", f"10.0.2.2:{self.relay_port}"]))
        assert relay.returncode == 0, relay.stderr
        volume_group = self.root(f"vgs {LIO_VG} >/dev/null 2>&1 || "  # made at the first boot
                                 f"{{ pvcreate -q /dev/vdb && vgcreate -q {LIO_VG} /dev/vdb; }}")
        assert volume_group.returncode == 0, volume_group.stderr

    def stop(self) -> None:
        """Kill qemu by PID, and end the shared ssh connection, if any."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
        try:
            quiet(["ssh", "-F", str(self.ssh_config), "-O", "exit", "guest-root"])
        except subprocess.TimeoutExpired:  # a master that hangs: the next ssh makes a new one
            (self.folder / CONTROL_SOCKET).unlink(missing_ok=True)

    def reset(self) -> None:
        """Log out of everything, forget every node record, empty the VM
        directories. A guest that cannot be emptied so (iscsiadm hanging, for
        one) is booted again, so that the tests after this one find a clean
        guest, and this one fails with the guest's state as it was."""
        try:
            done = self.root(RESET, timeout=RESET_TIMEOUT)
            trouble = "" if done.returncode == 0 else f"exit {done.returncode}: {done.stdout}{done.stderr}"
        except subprocess.TimeoutExpired:
            trouble = f"no answer within {RESET_TIMEOUT} s"
        if trouble:
            state = self.state()
            self.stop()
            try:
                self.boot()
            except Exception as error:
                self.broken = f"booting it again after a failed reset failed: {error}"
                raise AssertionError(f"the guest could not be reset ({trouble}); {self.broken}. "
                                     f"Before:\n{state}") from None
            raise AssertionError(f"the guest could not be reset ({trouble}); booted it again. Before:\n{state}")

    def usable(self) -> "Guest":
        """The guest, unless an earlier test left it of no use: then this test fails at once."""
        if self.broken:
            pytest.fail(f"no guest: {self.broken}")
        return self

    def state(self) -> str:
        """What tells why the guest misbehaves: its console's tail, and, over a
        connection of its own with every command bounded, tasks stuck in the
        kernel with their stacks, the kernel's and iscsid's latest messages."""
        try:
            done = quiet(["ssh", "-F", str(self.ssh_config), "-o", "ControlPath=none", "guest-root", STATE],
                         timeout=90)
            seen = done.stdout + done.stderr
        except subprocess.TimeoutExpired:
            seen = "(the guest did not answer within 90 s)"
        return f"--- console\n{self.tail(60)}\n--- guest\n{seen}"


RESET = (f"iscsiadm -m node --logoutall=all; iscsiadm -m node -o delete; rm -rf {VM_ROOT}/*; "
         "udevadm settle --timeout=30; iscsiadm -m session; test $? = 21")  # 21: no session left
RESET_TIMEOUT = 120
STATE = ("t() { timeout 10 \"$@\" 2>&1; }; t iscsiadm -m session -P 1; t systemctl --no-pager status iscsid; "
         "ps -eo pid,stat,wchan:32,etime,args | awk 'NR == 1 || $2 ~ /D/ || /iscsi/'; "
         "for pid in $(ps -eo pid=,stat= | awk '$2 ~ /D/ {print $1}'); do echo \"--- stack of $pid\"; "
         "cat /proc/$pid/stack; done; t dmesg | tail -n 40; t journalctl --no-pager -n 40 -u iscsid")


def ssh_blocks(port: int, key: Path, folder: Path) -> str:
    """Host `guest` (as one-iscsi logs in) and `guest-root` (for inspection)."""
    return (f"Host guest guest-root\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {key}\n"
            "  IdentitiesOnly yes\n  BatchMode yes\n  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n  ConnectTimeout 20\n  LogLevel ERROR\n"
            "Host guest\n  User oneadmin\n"
            f"Host guest-root\n  User root\n  ControlMaster auto\n  ControlPath {folder}/{CONTROL_SOCKET}\n"
            "  ControlPersist 300\n")


@pytest.fixture(scope="session")
def guest(tmp_path_factory, tgtd_daemon, sshd):
    """The booted guest, with the relay to the session's tgtd and its own
    volume group for LIO. Its ssh config also holds the loopback sshd's aliases
    (`tgtserver`), so it serves as SSH."""
    image = guest_image.image()
    folder = tmp_path_factory.mktemp("guest")
    port = free_port()
    lio_port = free_port()
    while lio_port == port:  # nothing holds the first yet: the second pick may repeat it
        lio_port = free_port()
    lio_disk = folder / "lio-pv.img"
    with open(lio_disk, "wb") as handle:
        handle.truncate(LIO_DISK_SIZE)  # sparse
    config = folder / "ssh_config"
    config.write_text(ssh_blocks(port, image.key, folder) + sshd.config.read_text())
    qemu = ["qemu-system-x86_64", "-accel", "tcg", "-m", str(MEMORY_MB), "-smp", "2",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", KERNEL_ARGS,
            "-drive", f"file={image.disk},format=raw,if=virtio,snapshot=on",  # the image stays as built
            "-drive", f"file={lio_disk},format=raw,if=virtio",  # /dev/vdb
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22,"
                       f"hostfwd=tcp:127.0.0.1:{lio_port}-:{LIO_PORT}",
            "-device", "virtio-net-pci,netdev=net0", "-serial", f"file:{folder / 'console.log'}"]
    machine = Guest(qemu, config, folder, lio_port, tgtd_daemon.port)
    try:
        machine.boot()
        yield machine
    finally:
        machine.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that fails while using the guest reports the guest's state too
    (a failed reset reports it in its own error)."""
    report = (yield).get_result()
    guest = (item.funcargs or {}).get("guest")
    if report.when == "call" and report.failed and isinstance(guest, Guest):
        report.sections.append(("guest state", guest.state()))


@pytest.fixture
def frontend(guest, tgtd, monkeypatch, tmp_path):
    """The front-end's configuration, as an admin would write it in iscsi.conf:
    target server `tgtserver` (file backend in the test's folder), hosts over
    ssh with sudo, portal port of the session's tgtd. The guest is emptied
    after each test (sessions, node records, VM directories)."""
    for key, value in {"SSH": shlex.join(["ssh", "-F", str(guest.ssh_config)]), "HOST": "tgtserver",
                       "PORTAL_PORT": str(tgtd.port), "BACKEND": "file",
                       "POOL_DIR": str(tmp_path / "pool")}.items():
        monkeypatch.setenv(f"ONE_ISCSI_{key}", value)
    yield guest.usable()
    guest.reset()
