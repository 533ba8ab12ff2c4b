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
import signal
import subprocess

import pytest

from support.driver import action_xml, error_block, remote, start_remote
from support.paths import BIN
from support.wait import wait_for

from .guest_image import INITIATOR

VM = "/var/lib/one/datastores/0/9"
DISK = f"{VM}/disk.0"
SIZE = 6 * 1024 * 1024
SAVED = "/etc/rtslib-fb-target/saveconfig.json"
MIB = 1024 * 1024


@pytest.fixture
def lio(guest, monkeypatch, tmp_path):
    """The front-end's configuration for a LIO datastore on the guest."""
    for key, value in {"SSH": shlex.join(["ssh", "-F", str(guest.ssh_config)]), "HOST": "guest",
                       "TARGET": "lio", "BACKEND": "lvm", "VG_NAME": guest.lio_vg, "PORTAL_PORT": "3260",
                       "INITIATORS": "ALL"}.items():
        monkeypatch.setenv(f"ONE_ISCSI_{key}", value)
    yield guest.usable()
    try:
        guest.reset()
    finally:  # also after a guest booted again: the volumes on its second disk outlive a boot
        if not guest.broken:
            guest.root(f"for t in $(ls /sys/kernel/config/target/iscsi 2>/dev/null | "
                       f"grep '^iqn.2012-02.org.opennebula:guest'); "
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


@pytest.fixture
def lio_datastore(lio, monkeypatch):
    """A LIO datastore as OpenNebula has it: TARGET, HOST and VG_NAME in the
    datastore template only (template()), while iscsi.conf (the environment
    here) says nothing of LIO. The transfer actions get no template: they
    must find out that the target is LIO's on the target server."""
    for key in ("TARGET", "HOST", "VG_NAME"):
        monkeypatch.delenv(f"ONE_ISCSI_{key}")
    return lio


def template(guest) -> dict:
    return {"TARGET": "lio", "HOST": "guest", "VG_NAME": guest.lio_vg}


def ds7(action, image, object_id, image_template=None, datastore=None):
    """A datastore action as OpenNebula 7 calls it: ID argument, XML on stdin."""
    return remote("datastore", action, str(object_id),
                  stdin=action_xml(image, image_template or {}, datastore or {}))


def guest_size(guest, path) -> int:
    done = guest.root(f"blockdev --getsize64 $(readlink -f {path})")
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def guest_sha(guest, path, size) -> str:
    done = guest.root(f"head -c {size} {path} | sha256sum")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


def on_lio(guest, iqn) -> bool:
    return guest.root(f"test -d /sys/kernel/config/target/iscsi/{iqn}").returncode == 0


def test_opennebula_7_life_cycle_of_a_non_persistent_disk_on_lio(lio_datastore, tmp_path, monkeypatch):
    """Register, clone the image, deploy (a private copy on LIO with the
    image's access rules), write, grow, save-as of the running VM, stop to the front-end and
    resume, shutdown, remove: each step checked in LIO, in the guest's kernel
    and over iSCSI from here."""
    guest, ds = lio_datastore, template(lio_datastore)
    monkeypatch.setenv("ONE_ISCSI_OPENNEBULA_VERSION", "7.0")
    monkeypatch.setenv("ONE_ISCSI_NO_ISCSI", "localhost")
    path, data = image(tmp_path, 20)
    done = ds7("cp", {"PATH": str(path)}, 20, datastore=ds)
    assert done.returncode == 0, done.stderr
    iqn, data_format = done.stdout.split()
    assert (iqn, data_format) == (f"iqn.2012-02.org.opennebula:guest.{guest.lio_vg}.lv-one-20", "raw")
    done = ds7("clone", {"PATH": iqn, "CLONING_ID": "20", "FORMAT": "raw", "SIZE": "6"}, 24, datastore=ds)
    assert done.returncode == 0, done.stderr
    cloned = done.stdout.split()[0]
    assert on_lio(guest, cloned) and lun_bytes(guest, cloned, tmp_path)[:SIZE] == data
    assert ds7("rm", {"SOURCE": cloned}, 24, datastore=ds).returncode == 0

    private = f"iqn.2012-02.org.opennebula:guest.{guest.lio_vg}.lv-one-9-0"
    done = remote("tm", "clone", iqn, f"guest:{DISK}", "9", "0")
    assert done.returncode == 0, done.stderr
    assert on_lio(guest, private) and private in saved_targets(guest)
    assert guest.sessions() == [private]
    assert guest_sha(guest, DISK, SIZE) == hashlib.sha256(data).hexdigest()

    written = guest.root(f"head -c 65536 /dev/urandom | dd of={DISK} bs=64k oflag=direct conv=notrunc status=none")
    assert written.returncode == 0, written.stderr
    assert lun_bytes(guest, iqn, tmp_path)[:SIZE] == data  # the image stays as it was

    done = remote("tm", "resize", f"guest:{DISK}", "16", "9", "0")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: guest_size(guest, DISK) == 16 * MIB, timeout=30, what="the guest's kernel seeing 16 MiB")

    done = ds7("mkfs", {"SIZE": "16", "FORMAT": "save_as", "FS": ""}, 21,
               {"SAVED_VM_ID": "9", "SAVED_DISK_ID": "0", "SAVE_AS_HOT": "YES"}, ds)
    assert done.returncode == 0, done.stderr
    saved = done.stdout.strip()
    done = remote("tm", "cpds", f"guest:{DISK}", saved, "-1", "9", "0")
    assert done.returncode == 0, done.stderr
    disk = guest_sha(guest, DISK, 16 * MIB)
    assert hashlib.sha256(lun_bytes(guest, saved, tmp_path)).hexdigest() == disk

    # stop: the disk goes to the front-end (no iSCSI there), and back on resume
    parked = f"localhost:{tmp_path}/vms/9/disk.0"
    done = remote("tm", "mv", f"guest:{DISK}", parked, "9", "0")
    assert done.returncode == 0, done.stderr
    assert guest.sessions() == []
    done = remote("tm", "mv", parked, f"guest:{DISK}", "9", "0")
    assert done.returncode == 0, done.stderr
    assert guest.sessions() == [private] and guest_sha(guest, DISK, 16 * MIB) == disk

    done = remote("tm", "delete", f"guest:{DISK}", "9", "0")
    assert done.returncode == 0, done.stderr
    assert guest.sessions() == [] and not on_lio(guest, private) and private not in saved_targets(guest)
    assert guest.root(f"lvs {guest.lio_vg}/lv-one-9-0").returncode != 0
    for image_id, source in ((20, iqn), (21, saved)):
        done = ds7("rm", {"SOURCE": source}, image_id, datastore=ds)
        assert done.returncode == 0, done.stderr
        assert not on_lio(guest, source)
    assert saved_targets(guest) == []


def test_opennebula_3_4_life_cycle_of_a_persistent_disk_with_save_as_on_lio(lio_datastore, tmp_path, monkeypatch):
    """3.4: deploy (LN), a write in the guest, stop to the front-end and
    resume (MV), then shutdown with save-as: the new image made by mkfs
    (FSTYPE=save_as), and MVDS logs the host out and copies the disk into
    it on the target server; the data read back at each step."""
    guest, ds = lio_datastore, template(lio_datastore)
    monkeypatch.setenv("ONE_ISCSI_OPENNEBULA_VERSION", "3.4")
    monkeypatch.setenv("ONE_ISCSI_NO_ISCSI", "localhost")
    path, data = image(tmp_path, 22)
    done = remote("datastore", "cp", action_xml({"PATH": str(path)}, {}, ds), "22")
    assert done.returncode == 0, done.stderr
    iqn, size_mb = done.stdout.split()
    assert size_mb == "6"
    assert remote("tm", "ln", iqn, f"guest:{DISK}").returncode == 0
    assert guest.sessions() == [iqn] and guest_sha(guest, DISK, SIZE) == hashlib.sha256(data).hexdigest()
    written = guest.root(f"head -c 65536 /dev/urandom | dd of={DISK} bs=64k oflag=direct conv=notrunc status=none")
    assert written.returncode == 0, written.stderr
    disk = guest_sha(guest, DISK, SIZE)

    parked = f"localhost:{tmp_path}/vms/9/disk.0"
    assert remote("tm", "mv", f"guest:{DISK}", parked).returncode == 0
    assert guest.sessions() == []
    assert hashlib.sha256(lun_bytes(guest, iqn, tmp_path)[:SIZE]).hexdigest() == disk  # on the LUN while stopped
    assert remote("tm", "mv", parked, f"guest:{DISK}").returncode == 0
    assert guest.sessions() == [iqn] and guest_sha(guest, DISK, SIZE) == disk

    done = remote("datastore", "mkfs", action_xml({"SIZE": "6", "FSTYPE": "save_as"}, {}, ds), "23")
    assert done.returncode == 0, done.stderr
    saved = done.stdout.split()[0]
    done = remote("tm", "mvds", f"guest:{DISK}", saved)
    assert done.returncode == 0, done.stderr
    assert guest.sessions() == []
    assert hashlib.sha256(lun_bytes(guest, saved, tmp_path)[:SIZE]).hexdigest() == disk
    for image_id, source in ((22, iqn), (23, saved)):
        assert remote("datastore", "rm", action_xml({"SOURCE": source}, {}, ds), str(image_id)).returncode == 0
    assert saved_targets(guest) == []


def one_iscsi(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "one-iscsi"), *args], capture_output=True, text=True, timeout=180, input=stdin)


def test_target_list_show_delete_on_lio_by_iqn_in_tgts_shape(lio, tmp_path):
    """The admin's target commands on LIO: the same JSON keys as on tgt,
    TID None, targets given by IQN; a TID is refused, one-iscsi's targets
    are told from an admin's own, and a target in use is kept."""
    guest = lio
    iqn, _ = register(tmp_path, 30)
    made = guest.root(f"lvcreate -q -y -W n -L 4M -n other {guest.lio_vg} && "
                      f"targetcli /backstores/block create other /dev/{guest.lio_vg}/other && "
                      "targetcli /iscsi create iqn.2003-01.org.example:other && "
                      "targetcli /iscsi/iqn.2003-01.org.example:other/tpg1/luns create /backstores/block/other")
    assert made.returncode == 0, made.stderr
    try:
        done = one_iscsi("target", "list", "--json")
        assert done.returncode == 0, done.stderr
        listed = {entry["iqn"]: entry for entry in json.loads(done.stdout)}
        assert set(listed) == {iqn, "iqn.2003-01.org.example:other"}
        ours = listed[iqn]
        assert set(ours) == {"tid", "iqn", "managed", "luns", "acl", "accounts", "sessions", "initiators"}
        assert (ours["tid"], ours["managed"], ours["acl"], ours["sessions"]) == (None, True, ["ALL"], 0)
        assert [(lun["lun"], lun["backing_store"], lun["size_mib"]) for lun in ours["luns"]] == [
            (1, f"/dev/{guest.lio_vg}/lv-one-30", 8)]
        assert listed["iqn.2003-01.org.example:other"]["managed"] is False

        table = one_iscsi("target", "show", iqn)
        assert table.returncode == 0 and f"/dev/{guest.lio_vg}/lv-one-30 (8 MiB)" in table.stdout
        by_tid = one_iscsi("target", "show", "1")
        assert by_tid.returncode == 2 and "LIO has no TIDs" in by_tid.stderr

        kept = one_iscsi("target", "delete", "iqn.2003-01.org.example:other")
        assert kept.returncode != 0 and "was not made by one-iscsi" in kept.stderr

        assert remote("tm", "ln", iqn, f"guest:{DISK}", "6", "9", "0").returncode == 0
        busy = one_iscsi("target", "delete", iqn)
        assert busy.returncode != 0 and f"is in use by {INITIATOR}" in busy.stderr
        assert json.loads(one_iscsi("target", "show", iqn, "--json").stdout)["initiators"] == [INITIATOR]
        assert remote("tm", "delete", f"guest:{DISK}", "9", "0").returncode == 0
        done = one_iscsi("target", "delete", iqn)
        assert done.returncode == 0, done.stderr
        assert iqn not in saved_targets(guest) and not on_lio(guest, iqn)
        assert remote("datastore", "rm", action_xml({"SOURCE": iqn}), "30").returncode == 0
    finally:
        guest.root("targetcli /iscsi delete iqn.2003-01.org.example:other; "
                   f"targetcli /backstores/block delete other; lvremove -f {guest.lio_vg}/other")


def test_target_restore_on_lio_brings_back_what_was_saved(lio, tmp_path):
    """Stopping rtslib-fb-targetctl clears LIO and keeps the saved file;
    restore makes one-iscsi's targets again from it, data and access rules
    as they were, and leaves others' alone."""
    guest = lio
    iqn, data = register(tmp_path, 31)
    stop = guest.root("systemctl stop rtslib-fb-targetctl", timeout=120)
    assert stop.returncode == 0, stop.stderr
    try:
        assert not on_lio(guest, iqn)
        done = one_iscsi("target", "restore")
        assert done.returncode == 0, done.stderr
        assert f"restored {iqn}" in done.stderr and "1 restored, 0 already present" in done.stderr
        assert lun_bytes(guest, iqn, tmp_path)[:SIZE] == data
        again = one_iscsi("target", "restore")
        assert again.returncode == 0 and "0 restored, 1 already present" in again.stderr
    finally:
        guest.root("systemctl start rtslib-fb-targetctl", timeout=120)
    assert remote("datastore", "rm", action_xml({"SOURCE": iqn}), "31").returncode == 0


def test_status_and_gc_on_lio_find_and_remove_what_killed_actions_leave(lio, tmp_path):
    """status joins LIO's targets, its saved configuration and the volume
    group; gc removes a volume a killed cp left with a storage object on it,
    and a saved entry whose target and volume are gone, and nothing else."""
    guest, vg = lio, lio.lio_vg
    iqn, data = register(tmp_path, 32)
    left = guest.root(f"lvcreate -q -y -W n -L 4M -n lv-one-33 {vg} && "
                      f"targetcli /backstores/block create {vg}.lv-one-33 /dev/{vg}/lv-one-33")
    assert left.returncode == 0, left.stderr
    gone, _ = register(tmp_path, 35)
    unsaved = guest.root(
        "python3 -c 'import rtslib_fb as r, sys; "
        "r.Target(r.FabricModule(\"iscsi\"), sys.argv[1], mode=\"lookup\").delete(); "
        "r.BlockStorageObject(sys.argv[2]).delete()' " f"{gone} {vg}.lv-one-35 && lvremove -f {vg}/lv-one-35")
    assert unsaved.returncode == 0, unsaved.stderr

    done = one_iscsi("status", "--json")
    assert done.returncode == 0, done.stderr
    states = {entry["name"]: (entry["state"], entry["tid"], entry["flags"]) for entry in json.loads(done.stdout)}
    assert states == {"lv-one-32": ("ok", None, []), "lv-one-33": ("orphan", None, ["no-target"]),
                      "lv-one-35": ("orphan", None, ["not-in-tgtd", "store-missing", "no-volume"])}

    done = one_iscsi("gc", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"removed volume /dev/{vg}/lv-one-33 (no target, no saved file)",
        f"removed saved entry of {gone} in {SAVED} (no target, no volume, no backing store)"]
    assert guest.root(f"lvs {vg}/lv-one-33").returncode != 0 and saved_targets(guest) == [iqn]
    saved_objects = [so["name"] for so in json.loads(guest.root(f"cat {SAVED}").stdout)["storage_objects"]]
    assert saved_objects == [f"{vg}.lv-one-32"]  # lv-one-35's went with its target's entry
    assert guest.root(f"test -e /sys/kernel/config/target/core/iblock_*/{vg}.lv-one-33").returncode != 0
    assert lun_bytes(guest, iqn, tmp_path)[:SIZE] == data
    assert json.loads(one_iscsi("status", "--json").stdout)[0]["state"] == "ok"
    assert remote("datastore", "rm", action_xml({"SOURCE": iqn}), "32").returncode == 0


def test_sigterm_during_a_cp_on_lio_takes_back_target_storage_object_and_volume(lio, tmp_path):
    """What oned does to a driver it gives up on: SIGTERM while the image's
    data goes to a volume LIO already exports. The cp must take back what
    it made (target, storage object, saved entry, LV) and fail with
    OpenNebula's error block."""
    guest = lio
    path = tmp_path / "big.raw"
    path.write_bytes(os.urandom(96 * MIB))
    iqn = f"iqn.2012-02.org.opennebula:guest.{guest.lio_vg}.lv-one-40"
    process = start_remote("datastore", "cp", action_xml({"PATH": str(path)}), "40")
    try:
        wait_for(lambda: process.poll() is not None or guest.root("pgrep -f image-writer").returncode == 0,
                 timeout=120, what="the image's data going to the volume LIO exports")
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert error_block(stderr).startswith("interrupted by SIGTERM while copying"), stderr
    assert not on_lio(guest, iqn) and iqn not in saved_targets(guest)
    assert guest.root(f"test -e /sys/kernel/config/target/core/iblock_*/{guest.lio_vg}.lv-one-40").returncode != 0
    assert guest.root(f"lvs {guest.lio_vg}/lv-one-40").returncode != 0


def test_target_lun_acl_and_chap_commands_build_a_target_on_lio_by_hand(lio, tmp_path):
    """What an admin does by hand: new target, LUN, ACL by initiator name,
    CHAP set and unset, ACL removed, LUN unbound, deleted; each step seen
    by an initiator on this machine (qemu-img, whose initiator name is
    qemu's) and in the saved configuration."""
    guest, vg = lio, lio.lio_vg
    iqn = f"iqn.2012-02.org.opennebula:guest.{vg}.lv-one-50"
    reader = "iqn.2008-11.org.linux-kvm"
    data = os.urandom(MIB)
    (tmp_path / "data").write_bytes(data)
    made = guest.root(f"lvcreate -q -y -W n -L 4M -n lv-one-50 {vg}")
    assert made.returncode == 0, made.stderr
    copied = subprocess.run(["ssh", "-F", str(guest.ssh_config), "guest-root",
                             f"dd of=/dev/{vg}/lv-one-50 bs=1M conv=fsync status=none"],
                            input=data, capture_output=True, timeout=120)
    assert copied.returncode == 0, copied.stderr

    done = one_iscsi("target", "new", iqn)
    assert (done.returncode, done.stdout) == (0, f"{iqn}\n"), done.stderr
    assert on_lio(guest, iqn) and iqn in saved_targets(guest)
    assert one_iscsi("lun", "bind", iqn, f"/dev/{vg}/lv-one-50").returncode == 0
    rows = json.loads(one_iscsi("lun", "list", iqn, "--json").stdout)
    assert rows == [{"tid": None, "iqn": iqn, "lun": 1, "backing_store": f"/dev/{vg}/lv-one-50", "size_mib": 4}]
    assert read_over_iscsi(guest, iqn, tmp_path).returncode != 0  # nobody let in yet

    address = one_iscsi("target", "acl", "add", iqn, "10.0.2.2")
    assert address.returncode == 2 and "LIO admits initiators by name only: 10.0.2.2" in address.stderr
    # CHAP before the ACL: the ACL added later asks for it too
    done = one_iscsi("target", "chap", "set", iqn, "--user", "hand", "--password-file", "-", stdin="hand-Secret-42\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(one_iscsi("target", "show", iqn, "--json").stdout)["accounts"] == ["hand"]  # on the TPG
    assert one_iscsi("target", "acl", "add", iqn, reader).returncode == 0
    assert one_iscsi("target", "acl", "list", iqn).stdout == f"{reader}\n"
    assert read_over_iscsi(guest, iqn, tmp_path).returncode != 0
    assert lun_bytes(guest, iqn, tmp_path, "hand%hand-Secret-42@")[:MIB] == data
    assert one_iscsi("target", "chap", "unset", iqn).returncode == 0
    assert lun_bytes(guest, iqn, tmp_path)[:MIB] == data

    assert one_iscsi("target", "acl", "remove", iqn, reader).returncode == 0
    assert read_over_iscsi(guest, iqn, tmp_path).returncode != 0
    assert one_iscsi("lun", "unbind", iqn).returncode == 0
    assert guest.root(f"test -e /sys/kernel/config/target/core/iblock_*/{vg}.lv-one-50").returncode != 0
    assert one_iscsi("target", "delete", iqn).returncode == 0
    assert not on_lio(guest, iqn) and iqn not in saved_targets(guest)
    assert guest.root(f"lvremove -f {vg}/lv-one-50").returncode == 0


def test_copy_via_iscsi_on_lio_writes_through_the_portal_admitting_the_front_end_for_the_copy_only(
        lio, tmp_path, monkeypatch):
    """COPY_VIA=iscsi: qemu-img on this machine writes the LUN through the
    guest's forwarded portal, let in by a node ACL of its own (with the
    target's CHAP) that is gone after the copy."""
    guest = lio
    for key, value in {"COPY_VIA": "iscsi", "COPY_PORTAL": f"127.0.0.1:{guest.lio_portal_port}",
                       "INITIATORS": INITIATOR, "CHAP_USER": "copy-user",
                       "CHAP_PASSWORD": "copy-Secret-42"}.items():
        monkeypatch.setenv(f"ONE_ISCSI_{key}", value)
    iqn, data = register(tmp_path, 60)
    assert one_iscsi("target", "acl", "list", iqn).stdout == f"{INITIATOR}\n"
    monkeypatch.setenv("ONE_ISCSI_INITIATORS", "ALL")
    assert one_iscsi("target", "acl", "add", iqn, "iqn.2008-11.org.linux-kvm").returncode == 0
    assert lun_bytes(guest, iqn, tmp_path, "copy-user%copy-Secret-42@")[:SIZE] == data
    assert remote("datastore", "rm", action_xml({"SOURCE": iqn}), "60").returncode == 0


def test_a_file_backed_image_on_lio(lio, tmp_path, monkeypatch):
    """BACKEND=file: the image is a file in POOL_DIR on the target server,
    exported as a fileio storage object of the file's size."""
    guest = lio
    monkeypatch.setenv("ONE_ISCSI_BACKEND", "file")
    monkeypatch.setenv("ONE_ISCSI_POOL_DIR", "/srv/one-iscsi")
    iqn, data = register(tmp_path, 80)
    assert lun_bytes(guest, iqn, tmp_path)[:SIZE] == data
    shown = json.loads(one_iscsi("target", "show", iqn, "--json").stdout)
    assert [(lun["backing_store"], lun["type"]) for lun in shown["luns"]] == [
        (f"/srv/one-iscsi/{guest.lio_vg}/lv-one-80", "fileio")]
    assert remote("datastore", "rm", action_xml({"SOURCE": iqn}), "80").returncode == 0
    assert guest.root(f"test -e /srv/one-iscsi/{guest.lio_vg}/lv-one-80").returncode != 0


def test_a_cp_after_a_killed_one_makes_the_storage_object_left_behind_anew(lio, tmp_path, monkeypatch):
    """A cp killed once LIO had its fileio storage object, whose undo then
    removed only the file, leaves the object holding the removed file. The
    next cp of that image makes the object anew: the LUN serves the new
    file's data, not the removed file's."""
    guest = lio
    monkeypatch.setenv("ONE_ISCSI_BACKEND", "file")
    monkeypatch.setenv("ONE_ISCSI_POOL_DIR", "/srv/one-iscsi")
    name, path = f"{guest.lio_vg}.lv-one-81", f"/srv/one-iscsi/{guest.lio_vg}/lv-one-81"
    left = guest.root(f"mkdir -p /srv/one-iscsi/{guest.lio_vg} && head -c {SIZE} /dev/urandom > {path} && "
                      f"targetcli /backstores/fileio create {name} {path} && rm {path}")
    try:
        assert left.returncode == 0, left.stderr
        iqn, data = register(tmp_path, 81)
        assert lun_bytes(guest, iqn, tmp_path)[:SIZE] == data
        assert remote("datastore", "rm", action_xml({"SOURCE": iqn}), "81").returncode == 0
        assert guest.root(f"test -e /sys/kernel/config/target/core/fileio_*/{name}").returncode != 0
    finally:
        guest.root(f"targetcli /backstores/fileio delete {name} >/dev/null 2>&1; rm -f {path}")


def test_doctor_on_a_lio_target_server(lio):
    """doctor with TARGET=lio checks LIO's configfs and the program's run
    with sudo and rtslib instead of tgtd, and passes on the guest's set-up."""
    done = one_iscsi("doctor", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    checks = {check["check"]: check for check in json.loads(done.stdout)}
    assert checks["LIO"]["ok"] is True and checks["LIO"]["detail"].startswith("python3-rtslib-fb answers")
    assert "tgtd" not in checks and "sudo tgtadm" not in checks
