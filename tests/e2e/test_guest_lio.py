"""A datastore with TARGET=lio: the guest of conftest.py plays the target
server on the kernel's own target (LIO, through python3-rtslib-fb), and its
hypervisor host too.

one-iscsi on this machine drives the guest over ssh as oneadmin with sudo:
volumes in the guest's volume group on its second disk, targets made by
lioprogram.py piped to `sudo python3 -`. The data is read back from this
machine over iSCSI (qemu-img, libiscsi) through the guest's forwarded portal,
and by the guest's own kernel initiator logged in to its own target by `tm
ln`. Nothing is mocked."""
import hashlib
import json
import os
import shlex
import subprocess

import pytest

from support.driver import action_xml, error_block, remote

from .guest_image import INITIATOR

VM = "/var/lib/one/datastores/0/9"
DISK = f"{VM}/disk.0"
SIZE = 6 * 1024 * 1024
SAVED = "/etc/rtslib-fb-target/saveconfig.json"


@pytest.fixture
def lio(guest, monkeypatch, tmp_path):
    """The front-end's configuration for a LIO datastore on the guest."""
    for key, value in {"SSH": shlex.join(["ssh", "-F", str(guest.ssh_config)]), "HOST": "guest",
                       "TARGET": "lio", "BACKEND": "lvm", "VG_NAME": guest.lio_vg, "PORTAL_PORT": "3260",
                       "INITIATORS": "ALL"}.items():
        monkeypatch.setenv(f"ONE_ISCSI_{key}", value)
    yield guest
    guest.reset()
    guest.root(f"for t in $(ls /sys/kernel/config/target/iscsi 2>/dev/null | grep '^iqn.2012-02.org.opennebula:guest'); "
               f"do targetcli /iscsi delete $t; done; lvremove -f {guest.lio_vg} >/dev/null 2>&1; true")


def image(tmp_path, image_id) -> tuple:
    """A raw image of random data with a run of zeros; its path and bytes."""
    data = os.urandom(SIZE // 2) + bytes(SIZE // 4) + os.urandom(SIZE // 4)
    path = tmp_path / f"image-{image_id}.raw"
    path.write_bytes(data)
    return path, data


def register(tmp_path, image_id, **template) -> tuple:
    path, data = image(tmp_path, image_id)
    done = remote("datastore", "cp", action_xml({"PATH": str(path)}, {}, template), str(image_id))
    assert done.returncode == 0, done.stderr
    iqn = done.stdout.split()[0]
    assert iqn == f"iqn.2012-02.org.opennebula:guest.{'vg-lio'}.lv-one-{image_id}"
    return iqn, data


def read_over_iscsi(guest, iqn, tmp_path, credentials="") -> subprocess.CompletedProcess:
    out = tmp_path / "read.raw"
    out.unlink(missing_ok=True)
    return subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw",
                           f"iscsi://{credentials}127.0.0.1:{guest.lio_portal_port}/{iqn}/1", str(out)],
                          capture_output=True, text=True, timeout=120)


def lun_bytes(guest, iqn, tmp_path, credentials="") -> bytes:
    done = read_over_iscsi(guest, iqn, tmp_path, credentials)
    assert done.returncode == 0, done.stderr
    return (tmp_path / "read.raw").read_bytes()


def saved_targets(guest) -> list:
    done = guest.root(f"cat {SAVED}")
    assert done.returncode == 0, done.stderr
    return sorted(target["wwn"] for target in json.loads(done.stdout)["targets"])


def test_cp_ln_rm_on_lio(lio, tmp_path):
    guest = lio
    iqn, data = register(tmp_path, 9)
    assert lun_bytes(guest, iqn, tmp_path)[:SIZE] == data
    assert iqn in saved_targets(guest)
    assert guest.root(f"stat -c %a {SAVED}").stdout.strip() == "600"

    done = remote("tm", "ln", iqn, f"guest:{DISK}", "6", "9", "0")
    assert done.returncode == 0, done.stderr
    assert guest.sessions() == [iqn]
    read = guest.root(f"head -c {SIZE} {DISK} | sha256sum")
    assert read.stdout.split()[0] == hashlib.sha256(data).hexdigest()

    busy = remote("datastore", "rm", action_xml({"SOURCE": iqn}), "9")
    assert busy.returncode != 0
    assert f"is in use by {INITIATOR}" in error_block(busy.stderr) and "nothing removed" in error_block(busy.stderr)
    assert guest.root(f"test -e /dev/{guest.lio_vg}/lv-one-9").returncode == 0

    assert remote("tm", "delete", f"guest:{DISK}", "9", "0").returncode == 0
    gone = remote("datastore", "rm", action_xml({"SOURCE": iqn}), "9")
    assert gone.returncode == 0, gone.stderr
    assert guest.root(f"test -d /sys/kernel/config/target/iscsi/{iqn}").returncode != 0
    assert guest.root(f"lvs {guest.lio_vg}/lv-one-9").returncode != 0
    assert iqn not in saved_targets(guest)
    again = remote("datastore", "rm", action_xml({"SOURCE": iqn}), "9")
    assert again.returncode == 0 and "already deleted" in again.stderr


def test_a_restart_of_the_target_service_brings_the_target_back(lio, tmp_path):
    """rtslib-fb-targetctl clears every target when stopped and restores the
    saved configuration when started: what a reboot does."""
    guest = lio
    iqn, data = register(tmp_path, 10)
    restart = guest.root("systemctl restart rtslib-fb-targetctl", timeout=120)
    assert restart.returncode == 0, restart.stderr
    assert lun_bytes(guest, iqn, tmp_path)[:SIZE] == data
    assert remote("datastore", "rm", action_xml({"SOURCE": iqn}), "10").returncode == 0


def test_chap_and_initiator_names(lio, tmp_path, monkeypatch):
    guest = lio
    reader = "iqn.2008-11.org.linux-kvm"  # qemu's own initiator name, which qemu-img gives
    monkeypatch.setenv("ONE_ISCSI_INITIATORS", reader)
    monkeypatch.setenv("ONE_ISCSI_CHAP_USER", "lio-user")
    monkeypatch.setenv("ONE_ISCSI_CHAP_PASSWORD", "lio-Secret-4711")
    iqn, data = register(tmp_path, 11)
    assert lun_bytes(guest, iqn, tmp_path, "lio-user%lio-Secret-4711@")[:SIZE] == data
    assert read_over_iscsi(guest, iqn, tmp_path).returncode != 0  # no CHAP: refused
    assert read_over_iscsi(guest, iqn, tmp_path, "lio-user%wrong@").returncode != 0
    assert remote("datastore", "rm", action_xml({"SOURCE": iqn}), "11").returncode == 0


def test_an_address_in_initiators_is_refused_and_nothing_is_made(lio, tmp_path, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_INITIATORS", "10.0.2.0/24")
    path, _ = image(tmp_path, 12)
    done = remote("datastore", "cp", action_xml({"PATH": str(path)}), "12")
    assert done.returncode != 0
    assert error_block(done.stderr).startswith("LIO admits initiators by name only: 10.0.2.0/24")
    assert lio.root(f"lvs {lio.lio_vg}/lv-one-12").returncode != 0


def test_mkfs_makes_an_ext4_image_the_host_reads(lio, tmp_path):
    guest = lio
    done = remote("datastore", "mkfs", action_xml({"SIZE": "16", "FSTYPE": "ext4"}), "13")
    assert done.returncode == 0, done.stderr
    iqn = done.stdout.split()[0]
    assert lun_bytes(guest, iqn, tmp_path)[1024 + 56:1024 + 58] == b"\x53\xef"  # the ext4 superblock's magic
    assert remote("tm", "ln", iqn, f"guest:{DISK}", "16", "9", "0").returncode == 0
    assert guest.root(f"blkid -o value -s TYPE $(readlink -f {DISK})").stdout.strip() == "ext4"
    assert remote("tm", "delete", f"guest:{DISK}", "9", "0").returncode == 0
    assert remote("datastore", "rm", action_xml({"SOURCE": iqn}), "13").returncode == 0


def test_rm_removes_a_storage_object_left_without_its_target(lio, tmp_path):
    """What a cp killed between the storage object and the target leaves:
    LIO holds the LV, so rm must take the object away before the volume."""
    guest = lio
    vg = guest.lio_vg
    made = guest.root(f"lvcreate -q -y -W n -L 8M -n lv-one-14 {vg} && "
                      f"targetcli /backstores/block create {vg}.lv-one-14 /dev/{vg}/lv-one-14")
    assert made.returncode == 0, made.stderr
    done = remote("datastore", "rm", action_xml({"SOURCE": f"iqn.2012-02.org.opennebula:guest.{vg}.lv-one-14"}), "14")
    assert done.returncode == 0, done.stderr
    assert guest.root(f"test -e /sys/kernel/config/target/core/iblock_*/{vg}.lv-one-14").returncode != 0
    assert guest.root(f"lvs {vg}/lv-one-14").returncode != 0
