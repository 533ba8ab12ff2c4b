"""Builds, once, the disk image of the end-to-end guest: a Debian bookworm that
plays an OpenNebula hypervisor host, and can also play an iSCSI target server
on the kernel's LIO target.

Everything in it is Debian's own: debootstrap (minbase) from the Debian mirror,
the stock kernel (linux-image-amd64, which ships LIO's modules) with the
initramfs Debian generates for it, systemd, udev, open-iscsi, openssh-server,
sudo, and for the target server targetcli-fb, python3-rtslib-fb and lvm2, plus
dbus, without which targetcli exits 255. On top, only configuration: a static
address on qemu's user network, a fixed initiator name, a throwaway ssh key
for root and for `oneadmin`, who owns /var/lib/one and may run through sudo
iscsiadm, exactly as the README's sudoers line for hosts says, and the target
server's commands (SUDO_COMMANDS). LIO's modules are loaded at boot
(modules-load.d); systemd mounts configfs, and the package's
rtslib-fb-targetctl restores /etc/rtslib-fb-target/saveconfig.json at boot.

The result (kernel, initramfs, ext4 disk image, ssh key) is cached outside the
checkout in CACHE/<hash of this file>/, so changing the recipe rebuilds it and
every later run reuses it (older builds are removed when a new one is made).
Needs root, debootstrap and e2fsprogs (mkfs.ext4 -d: no loop mount). E2E_GUEST_MIRROR
and E2E_GUEST_CACHE override the mirror and the cache directory. Run
`python tests/e2e/guest_image.py` to build it ahead of the tests.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
MIRROR = os.environ.get("E2E_GUEST_MIRROR", "http://deb.debian.org/debian")
CACHE = Path(os.environ.get("E2E_GUEST_CACHE", "/var/cache/one-iscsi-e2e"))
PACKAGES = ["linux-image-amd64", "systemd-sysv", "udev", "kmod", "openssh-server",
            "open-iscsi", "sudo", "iproute2", "targetcli-fb", "python3-rtslib-fb", "dbus", "lvm2"]
# What oneadmin may run as root: the host's iscsiadm; as target server, the
# rtslib program one-iscsi pipes to `python3 -` (program and request on stdin,
# nothing more on the command line: lio.py) and the storage tools of its
# backends (paths of merged-/usr bookworm).
SUDO_COMMANDS = ("/usr/sbin/iscsiadm", "/usr/bin/python3 -", "/usr/sbin/lvcreate", "/usr/sbin/lvremove",
                 "/usr/sbin/lvs", "/usr/sbin/vgs", "/usr/sbin/lvextend", "/usr/sbin/blockdev", "/usr/bin/dd",
                 "/usr/sbin/blkdiscard", "/usr/bin/fallocate", "/usr/sbin/mkfs", "/usr/sbin/mkswap",
                 "/usr/bin/truncate", "/usr/bin/mkdir", "/usr/bin/chmod", "/usr/bin/rm", "/usr/bin/stat")
# The kernel's LIO target: its core, the block and file backstores, iSCSI
LIO_MODULES = ("target_core_mod", "target_core_iblock", "target_core_file", "iscsi_target_mod")
INITIATOR = "iqn.1993-08.org.debian:01:one-iscsi-e2e"
HOSTNAME = "guest"
# qemu's user network: the guest is 10.0.2.15, the machine running qemu 10.0.2.2
NETWORK = "[Match]\nType=ether\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\n"
# The target server's name as the guest sees it (see conftest.py: a relay on
# the guest's loopback carries its iSCSI connections to the machine's tgtd).
TARGET_SERVER = "tgtserver"
DISK_SIZE = "3G"


@dataclass(frozen=True)
class GuestImage:
    directory: Path

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def disk(self) -> Path:
        return self.directory / "disk.img"

    @property
    def key(self) -> Path:
        return self.directory / "id_ed25519"


def recipe_hash() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def run(argv: list, timeout: float) -> None:
    """Run argv in its own process group, all of which is killed if it runs out of time."""
    process = subprocess.Popen([str(arg) for arg in argv], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({process.returncode}): {output[-3000:]}")


@contextmanager
def locked(path: Path):
    """One builder at a time (several test runs may start together)."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def image() -> GuestImage:
    """The cached guest image, built first if this recipe has none yet."""
    CACHE.mkdir(mode=0o700, parents=True, exist_ok=True)
    guest = GuestImage(CACHE / recipe_hash())
    with locked(CACHE / ".lock"):
        if not (guest.directory / "ready").exists():
            build(guest.directory)
            for other in CACHE.iterdir():
                if other.is_dir() and other != guest.directory:
                    remove_tree(other)
    return guest


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def build(target: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="build-", dir=CACHE))
    root = work / "root"
    try:
        run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
             SUITE, root, MIRROR], timeout=540)
        configure(root, work)
        [kernel] = sorted((root / "boot").glob("vmlinuz-*"))
        [initrd] = sorted((root / "boot").glob("initrd.img-*"))
        shutil.copy(kernel, work / "vmlinuz")
        shutil.copy(initrd, work / "initrd.img")
        for deb in (root / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        run(["mkfs.ext4", "-q", "-F", "-L", HOSTNAME, "-d", root, work / "disk.img", DISK_SIZE], timeout=300)
        remove_tree(root)
        (work / "ready").touch()
        if target.exists():
            remove_tree(target)
        work.rename(target)
    finally:
        if work.exists():
            remove_tree(work)


def configure(root: Path, work: Path) -> None:
    write(root / "etc/hostname", f"{HOSTNAME}\n")
    write(root / "etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n127.0.0.1 {TARGET_SERVER}\n")
    write(root / "etc/fstab", "/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    write(root / "etc/systemd/network/10-qemu.network", NETWORK)
    write(root / "etc/iscsi/initiatorname.iscsi", f"InitiatorName={INITIATOR}\n", 0o600)
    write(root / "etc/sudoers.d/one-iscsi", f"oneadmin ALL=(root) NOPASSWD: {', '.join(SUDO_COMMANDS)}\n", 0o440)
    run(["chroot", root, "visudo", "-c", "-q", "-f", "/etc/sudoers.d/one-iscsi"], timeout=60)
    # a sudoers path that is not in the image would silently never match
    run(["chroot", root, "stat", "-L", "--format=%n", *(command.split()[0] for command in SUDO_COMMANDS)],
        timeout=60)
    write(root / "etc/modules-load.d/lio.conf", "".join(f"{module}\n" for module in LIO_MODULES))
    # rtslib-fb-targetctl is enabled by its package already: named so it stays so
    run(["chroot", root, "systemctl", "enable", "systemd-networkd", "rtslib-fb-targetctl"], timeout=60)
    run(["chroot", root, "useradd", "--create-home", "--shell", "/bin/bash", "oneadmin"], timeout=60)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "one-iscsi-e2e", "-f", work / "id_ed25519"],
        timeout=60)
    public = (work / "id_ed25519.pub").read_text()
    for home, owner in (("root", "root"), ("home/oneadmin", "oneadmin")):
        write(root / home / ".ssh/authorized_keys", public, 0o600)
        run(["chroot", root, "chown", "-R", f"{owner}:{owner}", f"/{home}/.ssh"], timeout=60)
    (root / "var/lib/one/datastores").mkdir(parents=True)
    run(["chroot", root, "chown", "-R", "oneadmin:oneadmin", "/var/lib/one"], timeout=60)


def remove_tree(path: Path) -> None:
    """rm -rf, after detaching what a killed debootstrap may have left mounted below path."""
    below = str(path.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in reversed([mount for mount in mounts if mount.startswith(below)]):
        run(["umount", "--lazy", mount], timeout=60)
    shutil.rmtree(path)


if __name__ == "__main__":
    started = time.monotonic()
    built = image()
    print(f"{built.directory} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
