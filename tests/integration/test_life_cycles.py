"""Whole VM life cycles, driven as OpenNebula 3.4 and 7.x drive the driver:
datastore actions called as oned's datastore driver calls them and their
replies read as oned reads them, transfer files run line by line with the
system datastore's own TM (shared or ssh) for the VM directory lines
(support.opennebula).

The one mock: the hosts' kernels here have no iSCSI initiator, so iscsiadm is
tests/data/fake-iscsiadm, which keeps sessions and node records per host and,
on login, links the by-path device to the LUN's backing file (the harness
exports every target of tgtd to it before each iscsiadm call). Everything else
is real: tgtd, ssh to every host, the shells there, links and directories, and
the data, read back over iSCSI with libiscsi. With the ssh system TM each host
has its own view of the system datastore.
"""
import os
import subprocess

import pytest

from support.opennebula import SYSTEM_TMS, TARGET_SERVER, Cloud, DatastoreDriver, vm_xml

MIB = 1024 * 1024
BASE_IQN = "iqn.2020-01.org.example"  # the datastore's own, not iscsi.conf's default
DS = {"HOST": TARGET_SERVER, "BASE_IQN": BASE_IQN, "VG_NAME": "vg-one"}
CLONE_REFUSED = "CLONE not supported for TM_ISCSI. Use persistent images"


def iqn(lv) -> str:
    return f"{BASE_IQN}:{TARGET_SERVER}.vg-one.lv-one-{lv}"


@pytest.fixture
def make_cloud(sshd, tgtd, tmp_path, monkeypatch):
    """make_cloud(version, system_tm): the cloud of the test, its environment set."""
    monkeypatch.delenv("ONE_LOCATION", raising=False)

    def make(version: str, system_tm: str = "shared", **env: str) -> Cloud:
        cloud = Cloud(tmp_path / "cloud", sshd, tgtd, version, system_tm)
        for key, value in cloud.env(**env).items():
            monkeypatch.setenv(key, value)
        return cloud

    return make


def image_file(cloud: Cloud, name: str, mib: int = 2) -> tuple[str, bytes]:
    data = os.urandom(mib * MIB)
    path = cloud.root / f"{name}.raw"
    path.write_bytes(data)
    return str(path), data


def register(cloud: Cloud, image_id: int, mib: int = 2) -> tuple[str, bytes]:
    """cp of a new random image; its SOURCE and data, checked over iSCSI."""
    path, data = image_file(cloud, f"image-{image_id}", mib)
    image = {"PATH": path} if cloud.ds.v < (4,) else {"PATH": path, "SIZE": mib, "FORMAT": ""}
    reply = cloud.ds.call("cp", image, {}, DS, image_id)
    assert reply.ok, reply.info
    assert reply.source == iqn(image_id)
    assert cloud.lun(reply.source) == data
    return reply.source, data


def remove(cloud: Cloud, source: str, image_id: int) -> None:
    """rm of an image: its target and pool file are gone."""
    backing = cloud.targets()[source]
    reply = cloud.ds.call("rm", {"SOURCE": source}, {}, DS, image_id)
    assert reply.ok, reply.info
    assert source not in cloud.targets()
    assert not os.path.exists(backing)


def transfer(cloud: Cloud, *lines: str) -> None:
    reply = cloud.tm.run(lines)
    assert reply.ok, f"{reply.line}: {reply.info}"


def assert_sessions(cloud: Cloud, expected: dict) -> None:
    """The hosts' iSCSI sessions, and their node records: a host keeps the
    record of a target while logged in to it, and only then."""
    assert cloud.logged_in() == expected
    assert cloud.node_records() == expected


# --- OpenNebula 3.4 -----------------------------------------------------------------------------------

def deploy_and_migrate(cloud, sys_tm, source, data, vm, ln_tail, tail):
    """LN on node1, then a cold migration to node2 (iscsi line, then the
    system TM's), checking the sessions and the data after each."""
    disk = f"{vm}/disk.0"
    transfer(cloud, f"LN iscsi {source} node1:{disk} {ln_tail}")
    assert_sessions(cloud, {"node1": [source]})
    assert cloud.read("node1", disk) == data
    transfer(cloud, f"MV iscsi node1:{disk} node2:{disk}{tail}", f"MV {sys_tm} node1:{vm} node2:{vm}{tail}")
    assert_sessions(cloud, {"node2": [source]})
    assert cloud.read("node2", disk) == data


@pytest.mark.parametrize("system_tm", SYSTEM_TMS)
def test_34_persistent_image_through_deploy_migration_stop_resume_and_save_as(make_cloud, system_tm):
    cloud = make_cloud("3.4", system_tm)
    sys_tm, vm = system_tm, cloud.vm_dir(7)
    disk = f"{vm}/disk.0"

    # register: the datastore's BASE_IQN and HOST make the SOURCE, the size in MB follows
    path, data = image_file(cloud, "image-3")
    registered = cloud.ds.call("cp", {"PATH": path}, {}, DS, 3)
    assert registered.ok, registered.info
    assert (registered.source, registered.size_mb) == (iqn(3), 2)
    source = registered.source
    assert cloud.lun(source) == data

    # deploy on node1, cold migration to node2: the disk survives the system TM's move of the directory
    deploy_and_migrate(cloud, sys_tm, source, data, vm, "2", "")
    if sys_tm == "ssh":
        assert not cloud.seen_from("node1", vm).exists()

    # stop: to the front-end, which uses no iSCSI
    transfer(cloud, f"MV iscsi node2:{disk} front-end:{disk}", f"MV {sys_tm} node2:{vm} front-end:{vm}")
    assert_sessions(cloud, {})
    assert os.path.lexists(cloud.seen_from("front-end", disk))
    if sys_tm == "ssh":
        assert not cloud.seen_from("node2", vm).exists()

    # resume on node1: the same target, under the datastore's BASE_IQN
    transfer(cloud, f"MV iscsi front-end:{disk} node1:{disk}", f"MV {sys_tm} front-end:{vm} node1:{vm}")
    assert_sessions(cloud, {"node1": [source]})
    assert cloud.read("node1", disk) == data

    # the VM writes; save-as makes the new image, shutdown fills it
    written = os.urandom(len(data))
    cloud.write("node1", disk, written)
    assert cloud.read("node1", disk) == written
    saved = cloud.ds.call("mkfs", {"FSTYPE": "save_as", "SIZE": 2}, {}, DS, 4)
    assert saved.ok, saved.info
    assert (saved.source, saved.size_mb) == (iqn(4), 2)
    assert saved.source in cloud.targets()
    transfer(cloud, f"MVDS iscsi node1:{disk} {saved.source}", f"DELETE {sys_tm} node1:{vm}")
    assert cloud.lun(saved.source) == written
    assert cloud.lun(source) == written  # the VM wrote to the image itself
    assert_sessions(cloud, {})
    assert not cloud.seen_from("node1", vm).exists()

    remove(cloud, source, 3)
    remove(cloud, saved.source, 4)


@pytest.mark.parametrize("system_tm", SYSTEM_TMS)
def test_34_shutdown_to_its_own_image_and_cancel_only_log_out(make_cloud, system_tm):
    cloud = make_cloud("3.4", system_tm)
    source, data = register(cloud, 5)
    vm = cloud.vm_dir(8)
    transfer(cloud, f"LN iscsi {source} node1:{vm}/disk.0")
    assert_sessions(cloud, {"node1": [source]})
    assert cloud.read("node1", f"{vm}/disk.0") == data

    transfer(cloud, f"MVDS iscsi node1:{vm}/disk.0 {source}", f"DELETE {system_tm} node1:{vm}")
    assert_sessions(cloud, {})
    assert not cloud.seen_from("node1", vm).exists()
    assert cloud.lun(source) == data

    again = cloud.vm_dir(9)  # another deploy, cancelled
    transfer(cloud, f"LN iscsi {source} node2:{again}/disk.0")
    assert_sessions(cloud, {"node2": [source]})
    transfer(cloud, f"DELETE iscsi node2:{again}/disk.0", f"DELETE {system_tm} node2:{again}")
    assert_sessions(cloud, {})
    assert not cloud.seen_from("node2", again).exists()
    assert cloud.lun(source) == data

    remove(cloud, source, 5)


@pytest.mark.parametrize("previous_first", [True, False], ids=["previous-first", "current-first"])
@pytest.mark.parametrize("system_tm", SYSTEM_TMS)
def test_34_delete_after_a_migration_cleans_up_both_hosts_and_keeps_the_new_hosts_link_until_its_own_delete(
        make_cloud, system_tm, previous_first):
    """Deleting a VM caught in a migration: oned sends DELETE for the host and
    for the previous host. On a shared system datastore both name one file,
    which the previous host's DELETE must leave to the new host's."""
    cloud = make_cloud("3.4", system_tm)
    source, data = register(cloud, 11)
    vm = cloud.vm_dir(12)
    disk = f"{vm}/disk.0"
    deploy_and_migrate(cloud, system_tm, source, data, vm, "2", "")
    if previous_first:
        transfer(cloud, f"DELETE iscsi node1:{disk}")
        assert_sessions(cloud, {"node2": [source]})
        assert cloud.read("node2", disk) == data
        transfer(cloud, f"DELETE iscsi node2:{disk}")
    else:
        transfer(cloud, f"DELETE iscsi node2:{disk}")
        transfer(cloud, f"DELETE iscsi node1:{disk}")
    assert_sessions(cloud, {})
    assert not os.path.lexists(cloud.seen_from("node2", disk))
    transfer(cloud, f"DELETE {system_tm} node2:{vm}", f"DELETE {system_tm} node1:{vm}")
    assert cloud.lun(source) == data
    remove(cloud, source, 11)


def test_34_clone_is_refused(make_cloud):
    cloud = make_cloud("3.4")
    source, _ = register(cloud, 6)
    disk = f"{cloud.vm_dir(10)}/disk.0"
    refused = cloud.tm.run([f"CLONE iscsi {source} node1:{disk} 2"])
    assert (refused.ok, refused.info) == (False, CLONE_REFUSED)
    assert_sessions(cloud, {})
    assert not os.path.lexists(cloud.seen_from("node1", disk))
    assert list(cloud.targets()) == [source]
    remove(cloud, source, 6)


def test_34_cp_refuses_images_under_one_location(make_cloud, tmp_path, monkeypatch):
    one = tmp_path / "one"
    cloud = make_cloud("3.4")
    monkeypatch.setenv("ONE_LOCATION", str(one))
    for inside in (one / "var" / "datastores" / "1", one / "etc"):
        inside.mkdir(parents=True)
        image = inside / "image.raw"
        image.write_bytes(os.urandom(MIB))
        refused = cloud.ds.call("cp", {"PATH": str(image)}, {}, DS, 11)
        assert (refused.ok, refused.info) == (False, f"Not allowed to copy image file {image}")
    assert cloud.targets() == {} and not cloud.pool_file("lv-one-11").exists()
    source, _ = register(cloud, 11)  # the cloud's images are outside ONE_LOCATION
    remove(cloud, source, 11)


# --- OpenNebula 7.x -----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["7.0", "6.10"])
def test_7x_datastore_actions_reply_what_oned_parses(make_cloud, version):
    cloud = make_cloud(version)
    path, data = image_file(cloud, "image", mib=3)
    stat = cloud.ds.call("stat", {"PATH": path}, {}, DS, 1)
    assert (stat.ok, stat.size_mb) == (True, 3), stat.info

    copied = cloud.ds.call("cp", {"PATH": path, "SIZE": 3, "FORMAT": ""}, {}, DS, 20)
    assert copied.ok, copied.info
    assert (copied.source, copied.format) == (iqn(20), "raw")
    assert cloud.lun(copied.source) == data

    usage = cloud.ds.call("monitor", None, None, DS, 100)
    assert usage.ok, usage.info
    assert 0 <= usage.usage["FREE_MB"] <= usage.usage["TOTAL_MB"] and usage.usage["TOTAL_MB"] > 0
    assert usage.usage["USED_MB"] >= 0

    ext4 = cloud.ds.call("mkfs", {"FS": "ext4", "FORMAT": "raw", "SIZE": 8}, {}, DS, 21)
    assert (ext4.ok, ext4.source) == (True, iqn(21)), ext4.info
    formatted = cloud.lun(ext4.source)
    assert len(formatted) == 8 * MIB and formatted[1080:1082] == b"\x53\xef"  # ext2/3/4 superblock magic

    raw = cloud.ds.call("mkfs", {"FS": "", "FORMAT": "raw", "SIZE": 2}, {}, DS, 22)
    assert (raw.ok, raw.source) == (True, iqn(22)), raw.info
    assert cloud.lun(raw.source) == bytes(2 * MIB)

    for source, image_id in ((copied.source, 20), (ext4.source, 21), (raw.source, 22)):
        remove(cloud, source, image_id)


@pytest.mark.parametrize("system_tm", SYSTEM_TMS)
def test_7x_non_persistent_disk_through_a_whole_vm_life(make_cloud, system_tm):
    cloud = make_cloud("7.0", system_tm)
    sys_tm, vmid = system_tm, 40
    vm, ids = cloud.vm_dir(vmid), f"{vmid} 0"
    disk = f"{vm}/disk.0"
    source, data = register(cloud, 30)
    copy = iqn(f"{vmid}-0")

    # deploy: a private copy of the image for this VM
    transfer(cloud, f"CLONE iscsi {source} node1:{disk} {ids}")
    backing = cloud.targets().get(copy)
    assert backing, f"no target {copy}"
    assert cloud.lun(copy) == data
    assert_sessions(cloud, {"node1": [copy]})
    assert cloud.read("node1", disk) == data
    written = os.urandom(len(data))
    cloud.write("node1", disk, written)
    assert cloud.lun(copy) == written and cloud.lun(source) == data

    # live migration to node2 that fails, then one that succeeds
    xml = vm_xml(vmid, [
        {"DISK_ID": 0, "TM_MAD": "iscsi", "SOURCE": source, "CLONE": "YES", "PERSISTENT": "NO"},
        {"DISK_ID": 1, "TM_MAD": "qcow2", "SOURCE": "/var/lib/one/datastores/1/0123abcd", "CLONE": "YES",
         "PERSISTENT": "NO"}])

    def migrate(kind):
        reply = cloud.tm.migrate(kind, "node1", "node2", vm, vmid, 0, xml)
        assert reply.ok, f"{kind}migrate: {reply.info}"

    migrate("pre")
    assert_sessions(cloud, {"node1": [copy], "node2": [copy]})
    migrate("fail")
    assert_sessions(cloud, {"node1": [copy]})
    assert cloud.read("node1", disk) == written
    migrate("pre")
    assert_sessions(cloud, {"node1": [copy], "node2": [copy]})
    migrate("post")
    assert_sessions(cloud, {"node2": [copy]})
    assert cloud.read("node2", disk) == written
    if sys_tm == "ssh":
        assert not cloud.seen_from("node1", vm).exists()

    # cold migration back to node1, stop, resume
    transfer(cloud, f"MV iscsi node2:{disk} node1:{disk} {ids}", f"MV {sys_tm} node2:{vm} node1:{vm} {ids}")
    assert_sessions(cloud, {"node1": [copy]})
    assert cloud.read("node1", disk) == written
    transfer(cloud, f"MV iscsi node1:{disk} front-end:{disk} {ids}", f"MV {sys_tm} node1:{vm} front-end:{vm} {ids}")
    assert_sessions(cloud, {})
    assert os.path.lexists(cloud.seen_from("front-end", disk))
    transfer(cloud, f"MV iscsi front-end:{disk} node1:{disk} {ids}", f"MV {sys_tm} front-end:{vm} node1:{vm} {ids}")
    assert_sessions(cloud, {"node1": [copy]})
    assert cloud.read("node1", disk) == written

    # resize: tgtd serves the new size, the host rescanned
    transfer(cloud, f"RESIZE iscsi node1:{disk} 4 {ids}")
    assert cloud.capacity(copy) == 4 * MIB
    assert cloud.lun(copy)[:len(written)] == written
    assert any(copy in call.split() and {"-R", "--rescan"} & set(call.split()) for call in cloud.calls())

    # save-as while running: the new image gets the disk's bytes, the VM stays logged in
    saved = cloud.ds.call("mkfs", {"FORMAT": "save_as", "SIZE": 4},
                          {"SAVED_VM_ID": vmid, "SAVED_DISK_ID": 0, "SAVE_AS_HOT": "YES"}, DS, 31)
    assert (saved.ok, saved.source) == (True, iqn(31)), saved.info
    transfer(cloud, f"CPDS iscsi node1:{disk} {saved.source} -1 {ids}")
    assert cloud.lun(saved.source) == cloud.read("node1", disk)
    assert_sessions(cloud, {"node1": [copy]})

    # shutdown: the private copy goes, the image stays
    transfer(cloud, f"DELETE iscsi node1:{disk} {ids}", f"DELETE {sys_tm} node1:{vm} {ids}")
    assert copy not in cloud.targets() and not os.path.exists(backing)
    assert cloud.lun(source) == data
    assert_sessions(cloud, {})

    remove(cloud, source, 30)
    remove(cloud, saved.source, 31)


def lvm_cloud(make_cloud, vg, version):
    """A cloud whose datastore keeps its images as LVs of vg; its template,
    and the IQN of an image's (or private copy's) volume."""
    cloud = make_cloud(version, BACKEND="lvm", VG_NAME=vg.name)
    ds = {**DS, "BACKEND": "lvm", "VG_NAME": vg.name}
    return cloud, ds, lambda lv: f"{BASE_IQN}:{TARGET_SERVER}.{vg.name}.lv-one-{lv}"


def test_7x_non_persistent_disk_on_lvm_clone_resize_save_as_and_delete(make_cloud, vg):
    """The same life on real LVM2 volumes: lvcreate, lvextend and lvremove
    run (through the mapping wrappers of support.lvm), sizes are read from
    lvs and blockdev, and the data is checked in the PV's file itself."""
    cloud, ds, lv_iqn = lvm_cloud(make_cloud, vg, "7.0")
    vm, ids = cloud.vm_dir(41), "41 0"
    disk = f"{vm}/disk.0"
    path, data = image_file(cloud, "image-32", mib=3)
    copied = cloud.ds.call("cp", {"PATH": path, "SIZE": 3, "FORMAT": ""}, {}, ds, 32)
    assert (copied.ok, copied.source) == (True, lv_iqn(32)), copied.info
    assert vg.lvs() == {"lv-one-32": 3 * MIB}
    assert vg.read("lv-one-32", len(data)) == data

    transfer(cloud, f"CLONE iscsi {copied.source} node1:{disk} {ids}")
    copy = lv_iqn("41-0")
    assert vg.lvs() == {"lv-one-32": 3 * MIB, "lv-one-41-0": 3 * MIB}
    assert cloud.lun(copy) == data
    written = os.urandom(len(data))
    cloud.write("node1", disk, written)
    assert vg.read("lv-one-41-0", len(data)) == written
    assert vg.read("lv-one-32", len(data)) == data

    transfer(cloud, f"RESIZE iscsi node1:{disk} 5 {ids}")
    assert vg.lvs()["lv-one-41-0"] == 5 * MIB
    assert cloud.capacity(copy) == 5 * MIB
    assert cloud.lun(copy) == written + bytes(2 * MIB)

    saved = cloud.ds.call("mkfs", {"FORMAT": "save_as", "SIZE": 5},
                          {"SAVED_VM_ID": 41, "SAVED_DISK_ID": 0, "SAVE_AS_HOT": "YES"}, ds, 33)
    assert (saved.ok, saved.source) == (True, lv_iqn(33)), saved.info
    transfer(cloud, f"CPDS iscsi node1:{disk} {saved.source} -1 {ids}")
    assert vg.read("lv-one-33", 5 * MIB) == written + bytes(2 * MIB)

    transfer(cloud, f"DELETE iscsi node1:{disk} {ids}", f"DELETE shared node1:{vm} {ids}")
    assert copy not in cloud.targets()
    assert vg.lvs() == {"lv-one-32": 3 * MIB, "lv-one-33": 5 * MIB}
    assert_sessions(cloud, {})
    for source, image_id in ((copied.source, 32), (saved.source, 33)):
        assert cloud.ds.call("rm", {"SOURCE": source}, {}, ds, image_id).ok
    assert vg.lvs() == {} and vg.mapped() == []


def test_34_persistent_image_on_lvm_through_migration_stop_resume_and_save_as(make_cloud, vg):
    """3.4's life on real LVM2 volumes: the stopped VM's disk on the
    front-end is the LV's device itself; mkfs makes the save-as LV, MVDS
    copies the disk's LV into it on the target server."""
    cloud, ds, lv_iqn = lvm_cloud(make_cloud, vg, "3.4")
    vm = cloud.vm_dir(43)
    disk = f"{vm}/disk.0"
    path, data = image_file(cloud, "image-34")
    registered = cloud.ds.call("cp", {"PATH": path}, {}, ds, 34)
    assert (registered.ok, registered.source, registered.size_mb) == (True, lv_iqn(34), 2), registered.info
    assert vg.lvs() == {"lv-one-34": 2 * MIB}
    deploy_and_migrate(cloud, "shared", registered.source, data, vm, "2", "")

    transfer(cloud, f"MV iscsi node2:{disk} front-end:{disk}", f"MV shared node2:{vm} front-end:{vm}")
    assert_sessions(cloud, {})
    assert os.readlink(disk) == f"/dev/{vg.name}/lv-one-34"
    assert cloud.read("front-end", disk) == data
    transfer(cloud, f"MV iscsi front-end:{disk} node1:{disk}", f"MV shared front-end:{vm} node1:{vm}")
    assert_sessions(cloud, {"node1": [registered.source]})
    written = os.urandom(MIB)
    cloud.write("node1", disk, written)

    saved = cloud.ds.call("mkfs", {"FSTYPE": "save_as", "SIZE": 2}, {}, ds, 35)
    assert (saved.ok, saved.source, saved.size_mb) == (True, lv_iqn(35), 2), saved.info
    assert vg.lvs() == {"lv-one-34": 2 * MIB, "lv-one-35": 2 * MIB}
    transfer(cloud, f"MVDS iscsi node1:{disk} {saved.source}", f"DELETE shared node1:{vm}")
    assert_sessions(cloud, {})
    assert vg.read("lv-one-35", 2 * MIB) == written + data[MIB:]
    assert cloud.lun(saved.source) == written + data[MIB:]
    for source, image_id in ((registered.source, 34), (saved.source, 35)):
        assert cloud.ds.call("rm", {"SOURCE": source}, {}, ds, image_id).ok
    assert vg.lvs() == {} and vg.mapped() == []


@pytest.mark.parametrize("system_tm", SYSTEM_TMS)
def test_7x_persistent_disk_through_deploy_migration_and_shutdown(make_cloud, system_tm):
    cloud = make_cloud("7.0", system_tm)
    vm, ids = cloud.vm_dir(60), "60 0"
    disk = f"{vm}/disk.0"
    source, data = register(cloud, 50)
    deploy_and_migrate(cloud, system_tm, source, data, vm, ids, f" {ids}")
    written = os.urandom(len(data))
    cloud.write("node2", disk, written)

    transfer(cloud, f"MVDS iscsi node2:{disk} {source} {ids}", f"DELETE {system_tm} node2:{vm} {ids}")
    assert_sessions(cloud, {})
    assert cloud.lun(source) == written
    assert list(cloud.targets()) == [source]  # no private copy of a persistent disk
    remove(cloud, source, 50)


def test_7x_clone_of_an_image_copies_its_data(make_cloud):
    cloud = make_cloud("7.0")
    source, data = register(cloud, 70)
    cloned = cloud.ds.call("clone", {"PATH": source, "CLONING_ID": 70, "FORMAT": "raw", "SIZE": 2}, {}, DS, 71)
    assert cloned.ok, cloned.info
    assert (cloned.source, cloned.format) == (iqn(71), "raw")
    assert cloud.lun(cloned.source) == data
    remove(cloud, source, 70)
    remove(cloud, cloned.source, 71)


@pytest.mark.parametrize("action", ["snap_delete", "snap_revert", "snap_flatten", "restore", "increment_flatten",
                                    "export"])
def test_7x_unsupported_datastore_action_fails_clearly(make_cloud, action):
    cloud = make_cloud("7.0")
    reply = cloud.ds.call(action, {"SOURCE": iqn(80), "PATH": iqn(80), "TARGET_SNAPSHOT": 0}, {}, DS, 80)
    assert not reply.ok
    assert "not supported by the iscsi driver" in reply.info


@pytest.mark.parametrize("action", ["SNAP_CREATE", "SNAP_DELETE", "SNAP_REVERT"])
def test_7x_unsupported_transfer_action_fails_clearly(make_cloud, action):
    cloud = make_cloud("7.0")
    reply = cloud.tm.run([f"{action} iscsi node1:{cloud.vm_dir(81)}/disk.0 0 81 0"])
    assert not reply.ok
    assert "not supported by the iscsi driver" in reply.info
    assert cloud.calls() == []  # nothing ran on the host


def test_argv_call_needs_opennebula_version_stdin_call_does_not(make_cloud, tmp_path, monkeypatch):
    cloud = make_cloud("7.0")
    monkeypatch.delenv("ONE_ISCSI_OPENNEBULA_VERSION")
    (tmp_path / "no-opennebula").mkdir()
    monkeypatch.setenv("ONE_LOCATION", str(tmp_path / "no-opennebula"))
    path, data = image_file(cloud, "image")

    unknown = DatastoreDriver("3.4").call("cp", {"PATH": path}, {}, DS, 90)
    assert not unknown.ok and "OPENNEBULA_VERSION" in unknown.info
    assert cloud.targets() == {}

    copied = cloud.ds.call("cp", {"PATH": path, "SIZE": 2, "FORMAT": ""}, {}, DS, 90)
    assert copied.ok, copied.info
    assert (copied.source, copied.format) == (iqn(90), "raw")
    assert cloud.lun(copied.source) == data
    remove(cloud, copied.source, 90)


# --- the harness itself -------------------------------------------------------------------------------

@pytest.mark.parametrize("system_tm", SYSTEM_TMS)
def test_hosts_share_the_system_datastore_only_when_it_is_shared(make_cloud, system_tm):
    cloud = make_cloud("7.0", system_tm)
    vm = cloud.vm_dir(99)
    assert cloud.on("node1", f"mkdir -p {vm} && echo node1 > {vm}/who").returncode == 0
    seen = cloud.on("node2", f"cat {vm}/who 2>/dev/null || echo nothing")
    assert seen.stdout == ("node1\n" if system_tm == "shared" else "nothing\n")
    assert cloud.seen_from("node1", f"{vm}/who").read_text() == "node1\n"
    # as one-iscsi's sessions run: options, then a shell on the host reading commands on stdin
    session = subprocess.run([str(cloud.ssh), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "--", "node1",
                              "env LC_ALL=C sh"], input=f"cat {vm}/who\necho $ONE_ISCSI_TEST_HOST\n",
                             capture_output=True, text=True, timeout=60)
    assert (session.returncode, session.stdout) == (0, "node1\nnode1\n"), session.stderr


def test_ssh_system_tm_moves_the_vm_directory_with_its_links(make_cloud):
    cloud = make_cloud("3.4", "ssh")
    vm = cloud.vm_dir(98)
    assert cloud.on("node1", f"mkdir -p {vm} && ln -s /dev/null {vm}/disk.0 && echo vm > {vm}/deployment.0"
                    ).returncode == 0
    assert cloud.on("node2", f"mkdir -p {vm} && echo old > {vm}/stale").returncode == 0
    transfer(cloud, f"MV ssh node1:{vm}/disk.0 node2:{vm}/disk.0")  # a disk: the directory's move carries it
    assert not os.path.lexists(cloud.seen_from("node2", f"{vm}/disk.0"))
    transfer(cloud, f"MV ssh node1:{vm} node2:{vm}")
    assert os.readlink(cloud.seen_from("node2", f"{vm}/disk.0")) == "/dev/null"
    assert cloud.seen_from("node2", f"{vm}/deployment.0").read_text() == "vm\n"
    assert not cloud.seen_from("node2", f"{vm}/stale").exists()
    assert not cloud.seen_from("node1", vm).exists()
    transfer(cloud, f"DELETE ssh node2:{vm}")
    assert not cloud.seen_from("node2", vm).exists()


def test_the_hosts_iscsiadm_finds_every_target_of_tgtd_and_only_those(make_cloud, tgtd):
    cloud = make_cloud("3.4")
    backing = cloud.root / "lun.img"
    backing.write_bytes(bytes(MIB))
    for args in (["--mode", "target", "--op", "new", "--tid", "1", "--targetname", iqn(1)],
                 ["--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1", "--backing-store", str(backing)]):
        assert tgtd.tgtadm("--lld", "iscsi", *args).returncode == 0

    def discover() -> list[str]:
        done = subprocess.run([str(cloud.iscsiadm), str(cloud.state), "-m", "discovery", "-t", "st",
                               "-p", "tgtserver"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "ONE_ISCSI_TEST_HOST": "node1"})
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    assert discover() == [f"tgtserver:3260,1 {iqn(1)}"]
    assert (cloud.state / "luns" / iqn(1)).read_text() == str(backing)
    assert tgtd.tgtadm("--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1").returncode == 0
    assert discover() == []
