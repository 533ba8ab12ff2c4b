"""The transfer actions, run against a recording Runner (no process is
started): the exact commands on each host, and what a failure takes back."""
import dataclasses

import pytest

from support.expected import (ALLOWED, CHAP, READ_HINT, SHOW, allowed, cat, conf, delete_target, exported, forget,
                              found, lio_probe, listing, make_target, new_lun, no_file, readd_lun, saved)

from oneiscsi import imagewriter, initiator, tgtconf, tm
from oneiscsi.errors import SHOWN, InvalidInput, NotFound, OneIscsiError, StepFailed
from oneiscsi.tm import HostPath

IQN = "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-7"
DISK = "/var/lib/one/datastores/0/9/disk.0"
CARRIER = "/var/lib/one/datastores/0/9/.disk.0.iqn"  # the link beside DISK that holds its IQN
BY_PATH = f"/dev/disk/by-path/ip-10.0.0.1:3260-iscsi-{IQN}-lun-1"
NODE2_DEVICE = f"/dev/disk/by-path/ip-10.0.0.2:3260-iscsi-{IQN}-lun-1"  # as udev names it on node2
NODE = ["iscsiadm", "-m", "node", "--targetname", IQN]
LOGIN = [*NODE, "-p", "tgt1", "--login"]
LOGOUT = [*NODE, "--logout"]
FORGET = [*NODE, "-o", "delete"]


def carry(iqn, host="node1", carrier=CARRIER):
    """The link beside a disk: its IQN and the host that linked it."""
    return ["ln", "-sfnT", f"{iqn}@{host}", carrier]


def ln_commands(host="node1"):
    return [["mkdir", "-p", "/var/lib/one/datastores/0/9"],
            describe(DISK),
            [*NODE, "-p", "tgt1", "-o", "new"],
            [*NODE, "-p", "tgt1", "-o", "update", "-n", "node.startup", "-v", "manual"],
            LOGIN,
            ["timeout", "30", "sh", "-c", tm.WAIT_AND_LINK, "wait-and-link", "/dev/disk/by-path", IQN, "1", DISK],
            describe(DISK),  # the device linked, read back
            carry(IQN, host)]


def test_wait_and_link_passes_values_as_arguments_not_code():
    cmd = tm.wait_and_link("/dev/disk/by-path", IQN, "/var/lib/one/0/7/disk.0", 30)
    assert cmd.argv[:5] == ("timeout", "30", "sh", "-c", tm.WAIT_AND_LINK)
    assert cmd.argv[6:] == ("/dev/disk/by-path", IQN, "1", "/var/lib/one/0/7/disk.0")


def test_ln_records_one_node_logs_in_and_links(recorder):
    note = tm.ln(IQN, HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs("node1") == ln_commands()
    assert recorder.sessions == [("node1", False)]
    assert note == f"logged in to {IQN} on node1, linked {DISK}"


def test_ln_sets_chap_on_the_node_record_before_login(recorder):
    cfg = dataclasses.replace(recorder.cfg, chap_user="user", chap_password="pass-word-123")
    tm.ln(IQN, HostPath("node1", DISK), cfg, recorder.hosts)
    updates = [argv[-3:] for argv in recorder.argvs() if "update" in argv]
    assert updates == [["node.startup", "-v", "manual"], ["node.session.auth.authmethod", "-v", "CHAP"],
                       ["node.session.auth.username", "-v", "user"],
                       ["node.session.auth.password", "-v", "pass-word-123"]]
    assert recorder.argvs().index(LOGIN) > recorder.argvs().index([*NODE, "-p", "tgt1", "-o", "update", "-n",
                                                                   "node.session.auth.password", "-v",
                                                                   "pass-word-123"])


def test_ln_on_a_no_iscsi_host_links_the_volume(recorder):
    note = tm.ln(IQN, HostPath("frontend", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [["mkdir", "-p", "/var/lib/one/datastores/0/9"], describe(DISK),
                                ["ln", "-sfnT", "/dev/vg-one/lv-one-7", DISK], carry(IQN, "frontend")]
    assert note == f"linked frontend:{DISK} to /dev/vg-one/lv-one-7"


def test_ln_when_already_logged_in_keeps_the_session_even_if_linking_fails(recorder):
    recorder.fail(*LOGIN, rc=15, stderr="iscsiadm: session exists")
    recorder.fail("wait-and-link", rc=1, stderr="ln: failed to create symbolic link")
    with pytest.raises(OneIscsiError, match="ln: failed"):
        tm.ln(IQN, HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == ln_commands()[:6]  # no logout, no node record deleted: they were there before


def test_ln_failed_login_deletes_the_node_record(recorder):
    recorder.fail(*LOGIN, rc=24, stderr="iscsiadm: Login failed: authorization failure")
    with pytest.raises(OneIscsiError, match="iscsiadm failed on node1 \\(exit 24\\)"):
        tm.ln(IQN, HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [*ln_commands()[:5], FORGET]


def test_ln_failed_node_record_is_taken_back(recorder):
    recorder.fail("-o", "update", rc=6, stderr="iscsiadm: no records found")
    with pytest.raises(OneIscsiError):
        tm.ln(IQN, HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [*ln_commands()[:4], FORGET]


def test_ln_device_timeout_logs_out_again_and_says_so(recorder):
    recorder.fail("wait-and-link", rc=tm.TIMED_OUT_RC, stderr="")
    with pytest.raises(OneIscsiError) as caught:
        tm.ln(IQN, HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert str(caught.value) == f"no device for {IQN} on node1 within 30 s (DEVICE_TIMEOUT): logged out again"
    assert recorder.argvs() == [*ln_commands()[:6], LOGOUT, FORGET]


def test_ln_returns_the_device_it_read_back(recorder):
    recorder.answer("find", DISK, out=f"l {BY_PATH}\n")
    with recorder.runner("node1").session() as session:
        assert tm.link(session, IQN, HostPath("node1", DISK), recorder.cfg) == (
            f"logged in to {IQN} on node1, linked {DISK}", BY_PATH)
    assert recorder.argvs() == ln_commands()


def test_ln_whose_carrier_link_fails_logs_out_again(recorder):
    recorder.fail(*carry(IQN), stderr="ln: failed to create symbolic link: Read-only file system")
    with pytest.raises(OneIscsiError, match="Read-only file system"):
        tm.ln(IQN, HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [*ln_commands(), LOGOUT, FORGET]


def test_ln_clean_up_that_fails_travels_with_the_error(recorder):
    recorder.fail("wait-and-link", rc=tm.TIMED_OUT_RC, stderr="")
    recorder.fail(*LOGOUT, rc=8, stderr="iscsiadm: could not log out")
    with pytest.raises(OneIscsiError) as caught:
        tm.ln(IQN, HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert caught.value.rollback_failures == (f"logging out of {IQN}: iscsiadm failed on node1 (exit 8): "
                                              "iscsiadm: could not log out",)
    assert "undoing it failed" in str(caught.value)
    assert recorder.argvs()[-2:] == [LOGOUT, FORGET]  # the rest of the clean-up still ran


def test_mvds_logs_out_of_the_iqn_its_carrier_link_names(recorder):
    recorder.answer("find", CARRIER, out=f"l {IQN}\n")
    assert tm.mvds(HostPath("node1", DISK), IQN, recorder.cfg, recorder.hosts) == f"logged out of {IQN} on node1"
    assert recorder.argvs() == [describe(CARRIER), LOGOUT, FORGET]
    assert recorder.sessions == [("node1", False)]


def test_mvds_of_a_link_of_an_earlier_version_reads_the_disk_link(recorder):
    recorder.fail("find", CARRIER, stderr=f"find: '{CARRIER}': No such file or directory")
    recorder.answer("find", DISK, out=f"l {BY_PATH}\n")
    assert tm.mvds(HostPath("node1", DISK), IQN, recorder.cfg, recorder.hosts) == f"logged out of {IQN} on node1"
    assert recorder.argvs() == [describe(CARRIER), describe(DISK), LOGOUT, FORGET]


def test_mvds_without_a_session_is_fine(recorder):
    recorder.fail(*LOGOUT, rc=21, stderr="iscsiadm: No matching sessions found")
    recorder.fail(*FORGET, rc=21, stderr="iscsiadm: No records found")
    note = tm.mvds(HostPath("node1", DISK), IQN, recorder.cfg, recorder.hosts)
    assert note == f"no session to {IQN} on node1: nothing to log out"
    # no disk link found: the IQN given is the disk's
    assert recorder.argvs() == [describe(CARRIER), describe(DISK), LOGOUT, FORGET]


def test_mvds_on_a_no_iscsi_host_only_reads_the_links(recorder):
    note = tm.mvds(HostPath("frontend", DISK), IQN, recorder.cfg, recorder.hosts)
    assert note == f"no session to {IQN} on frontend: nothing to log out"
    assert recorder.argvs() == [describe(CARRIER), describe(DISK)]


IQN2 = "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-8"


def copier(source, device, zero="1"):
    """The volume copier as the recording Runner resolves its tools (no sudo)."""
    return ["sh", "-c", imagewriter.COPIER, "volume-copy", source, device, "dd", "blkdiscard -z",
            "fallocate --punch-hole", "blockdev", zero]


def test_mvds_of_a_save_as_logs_out_then_copies_the_disk_into_the_new_image(recorder):
    recorder.answer("find", CARRIER, out=f"l {IQN}\n")
    exported(recorder, 2, IQN2, ("/dev/vg-one/lv-one-8",))
    recorder.answer("volume-copy", out="copied 8388608 bytes\n")
    note = tm.mvds(HostPath("node1", DISK), IQN2, recorder.cfg, recorder.hosts)
    assert note == f"logged out of {IQN} on node1; saved {IQN} into {IQN2}: copied 8388608 bytes"
    assert recorder.calls == [("node1", describe(CARRIER)), ("node1", LOGOUT), ("node1", FORGET),
                              ("tgt1", lio_probe(IQN2)), *[("tgt1", argv) for argv in found(2, IQN2)],
                              ("tgt1", copier("/dev/vg-one/lv-one-7", "/dev/vg-one/lv-one-8"))]
    assert recorder.locks == [("hold", "tgt1", "/run/lock/one-iscsi.lock.vg-one.lv-one-8")]  # the image written


def test_mvds_of_a_private_copy_saves_it_then_removes_it_with_its_target(recorder):
    """3.4 with NON_PERSISTENT=yes: a non-persistent disk saved as a new image
    at shutdown. The VM's copy ends with the disk, as delete would end it."""
    private = "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-9-0"
    recorder.answer("find", CARRIER, out=f"l {private}\n")
    recorder.answer(*SHOW, out=listing((2, IQN2, ("/dev/vg-one/lv-one-8",)),
                                       (5, private, ("/dev/vg-one/lv-one-9-0",))))
    recorder.answer("volume-copy", out="copied 8388608 bytes\n")
    note = tm.mvds(HostPath("node1", DISK), IQN2, recorder.cfg, recorder.hosts)
    assert copier("/dev/vg-one/lv-one-9-0", "/dev/vg-one/lv-one-8") in recorder.argvs("tgt1")
    assert recorder.argvs("tgt1")[-3:] == [delete_target(5), forget(private), ["lvremove", "-f", "vg-one/lv-one-9-0"]]
    assert note.endswith(f"saved {private} into {IQN2}: copied 8388608 bytes; removed the VM's copy {private}")


def test_mvds_of_a_save_as_into_an_image_that_is_gone_copies_nothing(recorder):
    recorder.answer("find", CARRIER, out=f"l {IQN}\n")
    no_file(recorder, IQN2)
    with pytest.raises(NotFound) as caught:
        tm.mvds(HostPath("node1", DISK), IQN2, recorder.cfg, recorder.hosts)
    assert str(caught.value) == f"no target {IQN2} on tgt1: the image to save into does not exist"
    assert recorder.argvs("tgt1") == [lio_probe(IQN2), cat(IQN2), SHOW]


def test_mvds_of_a_save_as_into_another_target_servers_image_is_refused(recorder):
    recorder.answer("find", CARRIER, out=f"l {IQN}\n")
    other = "iqn.2012-02.org.opennebula:tgt2.vg-one.lv-one-8"
    with pytest.raises(OneIscsiError) as caught:
        tm.mvds(HostPath("node1", DISK), other, recorder.cfg, recorder.hosts)
    assert str(caught.value) == (f"{other} is on target server tgt2, the disk's image {IQN} on tgt1: a disk is "
                                 "saved only into an image of its own target server")
    assert recorder.argvs("tgt1") == recorder.argvs("tgt2") == []


def describe(path):
    return list(tm.describe(path).argv)


def test_delete_of_a_disk_logs_out_then_removes_the_link_and_its_carrier(recorder):
    recorder.answer("find", DISK, out=f"l {BY_PATH}\n")
    recorder.answer("find", CARRIER, out=f"l {IQN}\n")
    note = tm.delete(HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [describe(DISK), describe(CARRIER), LOGOUT, FORGET, ["rm", "-f", DISK, CARRIER]]
    assert recorder.sessions == [("node1", False)]
    assert note == f"logged out of {IQN} on node1, removed {DISK}"


@pytest.mark.parametrize("host", ["node1", "root@node1"])
def test_delete_by_the_host_that_linked_the_disk_removes_it(recorder, host):
    recorder.answer("find", DISK, out=f"l {BY_PATH}\n")
    recorder.answer("find", CARRIER, out=f"l {IQN}@{host}\n")
    note = tm.delete(HostPath(host, DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [describe(DISK), describe(CARRIER), LOGOUT, FORGET, ["rm", "-f", DISK, CARRIER]]
    assert note == f"logged out of {IQN} on {host}, removed {DISK}"


def test_delete_on_a_host_the_disk_moved_away_from_logs_out_and_leaves_the_link(recorder):
    """A shared system datastore: node1's path is the file node2 linked."""
    recorder.answer("find", DISK, out=f"l {NODE2_DEVICE}\n")
    recorder.answer("find", CARRIER, out=f"l {IQN}@node2\n")
    note = tm.delete(HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [describe(DISK), describe(CARRIER), LOGOUT, FORGET]
    assert note == f"logged out of {IQN} on node1; left {DISK}: node2 linked it"
    recorder.fail(*LOGOUT, rc=21, stderr="iscsiadm: No matching sessions found")
    assert tm.delete(HostPath("node1", DISK), recorder.cfg, recorder.hosts) == \
        f"no session on node1; left {DISK}: node2 linked it"


def test_delete_of_a_disk_of_an_earlier_version_reads_the_iqn_from_the_disk_link(recorder):
    recorder.answer("find", DISK, out=f"l {BY_PATH}\n")
    recorder.fail("find", CARRIER, stderr=f"find: '{CARRIER}': No such file or directory")
    note = tm.delete(HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [describe(DISK), describe(CARRIER), LOGOUT, FORGET, ["rm", "-f", DISK, CARRIER]]
    assert note == f"logged out of {IQN} on node1, removed {DISK}"


PRIVATE = "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-9-0"  # VM 9's copy for its disk 0
PRIVATE_LV = "/dev/vg-one/lv-one-9-0"


def test_delete_of_a_vms_private_copy_removes_its_target_and_volume_on_the_target_server(recorder):
    recorder.answer("find", DISK, out=f"l /dev/disk/by-path/ip-10.0.0.1:3260-iscsi-{PRIVATE}-lun-1\n")
    recorder.answer("find", CARRIER, out=f"l {PRIVATE}\n")
    exported(recorder, 5, PRIVATE, (PRIVATE_LV,), host="tgt1")
    note = tm.delete(HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    node = ["iscsiadm", "-m", "node", "--targetname", PRIVATE]
    assert recorder.calls == [("node1", describe(DISK)), ("node1", describe(CARRIER)),
                              ("node1", [*node, "--logout"]), ("node1", [*node, "-o", "delete"]),
                              ("tgt1", lio_probe(PRIVATE)),
                              *[("tgt1", argv) for argv in found(5, PRIVATE, sessions=True)],
                              ("tgt1", delete_target(5)), ("tgt1", forget(PRIVATE)),
                              ("tgt1", ["lvremove", "-f", "vg-one/lv-one-9-0"]),
                              ("node1", ["rm", "-f", DISK, CARRIER])]  # the link last: delete can run again
    assert recorder.locks == [("hold", "tgt1", "/run/lock/one-iscsi.lock.vg-one.lv-one-9-0")]
    assert note == f"logged out of {PRIVATE} on node1, removed {DISK}; removed the VM's copy {PRIVATE}"


def test_delete_of_a_private_copy_already_gone_says_so(recorder):
    recorder.answer("find", DISK, out=f"l {PRIVATE_LV}\n")
    recorder.answer("find", CARRIER, out=f"l {PRIVATE}\n")
    recorder.fail("lvremove", rc=5, stderr='  Failed to find logical volume "vg-one/lv-one-9-0"')
    note = tm.delete(HostPath("frontend", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs("frontend") == [describe(DISK), describe(CARRIER), ["rm", "-f", DISK, CARRIER]]
    assert note == (f"removed frontend:{DISK}; no target {PRIVATE} on tgt1: already deleted; "
                    f"no volume {PRIVATE_LV} on tgt1: already removed; removed the VM's copy {PRIVATE}")


def test_delete_of_a_persistent_images_disk_leaves_the_image(recorder):
    recorder.answer("find", DISK, out=f"l {BY_PATH}\n")
    recorder.answer("find", CARRIER, out=f"l {IQN}\n")
    tm.delete(HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs("tgt1") == [] and recorder.locks == []


VM_DIR = "/var/lib/one/datastores/0/9"
BY_PATH2 = f"/dev/disk/by-path/ip-10.0.0.1:3260-iscsi-{IQN2}-lun-1"


def disk_links(path):
    return list(tm.disk_links(path).argv)


def test_delete_of_a_directory_and_of_nothing(recorder):
    recorder.answer("find", VM_DIR, "-maxdepth", "0", out="d \n")
    recorder.fail("find", "/var/lib/one/datastores/0/8", stderr="find: '...': No such file or directory")
    assert tm.delete(HostPath("node1", VM_DIR), recorder.cfg, recorder.hosts) == f"removed node1:{VM_DIR}"
    assert tm.delete(HostPath("node1", "/var/lib/one/datastores/0/8"), recorder.cfg, recorder.hosts) == \
        "node1:/var/lib/one/datastores/0/8 does not exist: nothing to delete"
    assert recorder.argvs() == [describe(VM_DIR), disk_links(VM_DIR), ["rm", "-rf", VM_DIR],
                                describe("/var/lib/one/datastores/0/8")]


def test_disk_links_lists_the_top_level_disk_links_nul_separated():
    assert disk_links(VM_DIR) == ["find", VM_DIR, "-mindepth", "1", "-maxdepth", "1", "-type", "l",
                                  "-name", "disk.*", "-printf", "%l\\0"]
    assert tm.disk_links(VM_DIR).query


def test_delete_of_a_directory_logs_out_of_the_disks_in_it_first(recorder):
    recorder.answer("find", VM_DIR, "-maxdepth", "0", out="d \n")
    recorder.answer("find", VM_DIR, "-mindepth", out=f"{BY_PATH}\0/dev/sda\0{BY_PATH2}\0{BY_PATH}\0")
    note = tm.delete(HostPath("node1", VM_DIR), recorder.cfg, recorder.hosts)
    node2 = ["iscsiadm", "-m", "node", "--targetname", IQN2]
    assert recorder.argvs() == [describe(VM_DIR), disk_links(VM_DIR), LOGOUT, FORGET,
                                [*node2, "--logout"], [*node2, "-o", "delete"], ["rm", "-rf", VM_DIR]]
    assert recorder.sessions == [("node1", False)]
    assert note == f"logged out of {IQN} {IQN2} on node1, removed {VM_DIR}"


def test_delete_of_a_directory_on_a_no_iscsi_host_logs_out_of_nothing(recorder):
    recorder.answer("find", VM_DIR, "-maxdepth", "0", out="d \n")
    recorder.answer("find", VM_DIR, "-mindepth", out=f"{BY_PATH}\0")
    tm.delete(HostPath("root@frontend", VM_DIR), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [describe(VM_DIR), disk_links(VM_DIR), ["rm", "-rf", VM_DIR]]


def test_delete_of_a_directory_whose_logout_fails_removes_nothing(recorder):
    recorder.answer("find", VM_DIR, "-maxdepth", "0", out="d \n")
    recorder.answer("find", VM_DIR, "-mindepth", out=f"{BY_PATH}\0")
    recorder.fail(*LOGOUT, rc=8, stderr="iscsiadm: could not log out")
    with pytest.raises(OneIscsiError, match="could not log out"):
        tm.delete(HostPath("node1", VM_DIR), recorder.cfg, recorder.hosts)
    assert ["rm", "-rf", VM_DIR] not in recorder.argvs()


def test_delete_of_a_linked_vm_directory_removes_the_link_only(recorder):
    recorder.answer("find", VM_DIR, out="l /srv/elsewhere\n")
    assert tm.delete(HostPath("node1", VM_DIR), recorder.cfg, recorder.hosts) == f"removed node1:{VM_DIR}"
    carrier = "/var/lib/one/datastores/0/.9.iqn"
    assert recorder.argvs() == [describe(VM_DIR), describe(carrier), ["rm", "-f", VM_DIR, carrier]]


def test_delete_of_a_disk_link_to_a_directory_removes_the_link_only(recorder):
    recorder.answer("find", DISK, out="l /etc\n")
    assert tm.delete(HostPath("node1", DISK), recorder.cfg, recorder.hosts) == f"removed node1:{DISK}"
    assert recorder.argvs() == [describe(DISK), describe(CARRIER), ["rm", "-f", DISK, CARRIER]]


def test_delete_of_a_disk_that_is_a_directory_is_refused(recorder):
    recorder.answer("find", DISK, out="d \n")
    with pytest.raises(OneIscsiError, match=f"^node1:{DISK} is a directory, not a disk: not deleted$"):
        tm.delete(HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [describe(DISK)]


@pytest.mark.parametrize("path", [
    "/etc", "/var", "/home", "/usr", "/root", "/var/7", "/home/1000", "/etc/disk.0", "/disk.0", "/7",
    "/etc/one/7", "/usr/lib/7", "/proc/1/task/1", "/run/user/1000", "/sys/dev/char/1", "//etc//one//7",
    f"{VM_DIR}/deployment.0", f"{VM_DIR}/disk.0.snap", f"{VM_DIR}/disk.", f"{VM_DIR}/disk.x", f"{VM_DIR}/disk",
    "/var/lib/one/datastores/0/vm", "/var/lib/one/datastores/0/-9", "/var/lib/one/datastores/0/9a",
    "/var/lib/one/datastores/0/٩"])
def test_delete_refuses_what_is_not_a_vm_directory_or_disk(recorder, path):
    with pytest.raises(InvalidInput, match="^refusing to delete node1:.*: not a VM directory"):
        tm.delete(HostPath("node1", path), recorder.cfg, recorder.hosts)
    assert recorder.calls == [] and recorder.sessions == []


@pytest.mark.parametrize("path", [VM_DIR, DISK, f"{VM_DIR}/disk.12", "/var/lib/one//datastores/0/9",
                                  "/srv/one/100/12345", "/tmp/vms/a b/7", "/home/oneadmin/ds/0/7/disk.1"])
def test_delete_accepts_what_opennebula_sends(path):
    where = HostPath("node1", path)
    assert tm.check_deletable(where) is where


@pytest.mark.parametrize("path, message", [
    ("/", "ends with '/'"), (f"{VM_DIR}/", "ends with '/'"), (f"{DISK}/", "ends with '/'"),
    ("/var/lib/one/datastores/0/9/../../../../../etc/1", "has a '.' or '..' component"),
    (f"{VM_DIR}/./disk.0", "has a '.' or '..' component"), (f"{VM_DIR}/..", "has a '.' or '..' component"),
    (f"{VM_DIR}/{'x' * 256}/disk.0", "has a component longer than 255 bytes"),
    (f"{VM_DIR}/{'é' * 128}/disk.0", "has a component longer than 255 bytes")])
@pytest.mark.parametrize("action", ["ln", "mvds", "mv", "delete", "mv-destination"])
def test_every_action_refuses_paths_that_leave_themselves(recorder, path, message, action):
    where = HostPath("node1", path)
    run = {"ln": lambda: tm.ln(IQN, where, recorder.cfg, recorder.hosts),
           "mvds": lambda: tm.mvds(where, IQN, recorder.cfg, recorder.hosts),
           "mv": lambda: tm.mv(where, HostPath("node2", DISK), recorder.cfg, recorder.hosts),
           "mv-destination": lambda: tm.mv(HostPath("node2", DISK), where, recorder.cfg, recorder.hosts),
           "delete": lambda: tm.delete(where, recorder.cfg, recorder.hosts)}[action]
    with pytest.raises(InvalidInput) as caught:
        run()
    assert str(caught.value).startswith(f"path node1:{path[:150]}")
    assert message in str(caught.value)
    assert recorder.calls == [] and recorder.sessions == []


@pytest.mark.parametrize("action", ["ln", "mv", "delete"])
def test_a_huge_path_is_echoed_once_and_capped(recorder, action):
    where = HostPath("node1", "/" + "a" * 120_000)
    run = {"ln": lambda: tm.ln(IQN, where, recorder.cfg, recorder.hosts),
           "mv": lambda: tm.mv(where, HostPath("node2", DISK), recorder.cfg, recorder.hosts),
           "delete": lambda: tm.delete(where, recorder.cfg, recorder.hosts)}[action]
    with pytest.raises(InvalidInput) as caught:
        run()
    text = str(caught.value)
    assert text == f"path node1:/{'a' * (SHOWN - 7)}… is longer than 4095 characters"
    assert recorder.calls == []


def test_ln_onto_a_directory_is_refused_before_any_login(recorder):
    recorder.answer("find", DISK, out="d \n")
    with pytest.raises(OneIscsiError, match=f"^node1:{DISK} is a directory: not linking {IQN} there$"):
        tm.ln(IQN, HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == ln_commands()[:2]  # no node record, no login


def test_ln_onto_a_directory_on_a_no_iscsi_host_is_refused(recorder):
    recorder.answer("find", DISK, out="d \n")
    with pytest.raises(OneIscsiError, match="is a directory"):
        tm.ln(IQN, HostPath("frontend", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == ln_commands()[:2]


def test_ln_links_with_no_target_directory_semantics():
    assert "exec ln -sfnT " in tm.WAIT_AND_LINK


@pytest.mark.parametrize("host", ["tgt1:3261", "tgt1:", "[fd00::5]", "fd00::5"])
def test_ln_refuses_an_iqn_whose_host_is_no_plain_host_name(recorder, host):
    iqn = f"iqn.2012-02.org.opennebula:{host}.vg-one.lv-one-7"
    with pytest.raises(InvalidInput) as caught:
        tm.ln(iqn, HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.calls == []
    if host in ("tgt1:3261", "fd00::5"):  # names refuses the others already
        assert str(caught.value) == (f"IQN {iqn}: its host {host!r} is not a plain host name or IPv4 address "
                                     "(letters, digits, '.' and '-' only)")


def test_ln_logs_in_only_to_target_servers_when_they_are_set(recorder):
    cfg = dataclasses.replace(recorder.cfg, target_servers=("tgt2", "tgt3"))
    with pytest.raises(InvalidInput) as caught:
        tm.ln(IQN, HostPath("node1", DISK), cfg, recorder.hosts)
    assert str(caught.value) == f"IQN {IQN}: its host 'tgt1' is not one of TARGET_SERVERS (tgt2 tgt3)"
    assert recorder.calls == []
    tm.ln(IQN, HostPath("node1", DISK), dataclasses.replace(cfg, target_servers=("tgt2", "TGT1")), recorder.hosts)
    assert recorder.argvs() == ln_commands()


def test_ln_to_an_ipv4_target_host(recorder):
    iqn = "iqn.2012-02.org.opennebula:10.0.0.1.vg-one.lv-one-7"
    tm.ln(iqn, HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert ["iscsiadm", "-m", "node", "--targetname", iqn, "-p", "10.0.0.1", "--login"] in recorder.argvs()


def test_a_no_iscsi_host_is_judged_by_its_host_part(recorder):
    note = tm.ln(IQN, HostPath("root@frontend", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs()[-2:] == [["ln", "-sfnT", "/dev/vg-one/lv-one-7", DISK], carry(IQN, "root@frontend")]
    assert note == f"linked root@frontend:{DISK} to /dev/vg-one/lv-one-7"
    assert tm.mvds(HostPath("oneadmin@frontend", DISK), IQN, recorder.cfg, recorder.hosts) == \
        f"no session to {IQN} on oneadmin@frontend: nothing to log out"
    assert LOGOUT not in recorder.argvs()
    assert initiator.is_iscsi("root@node1", recorder.cfg)
    assert not initiator.is_iscsi("a@b@frontend", recorder.cfg)
    assert initiator.is_iscsi("frontend@node1", recorder.cfg)


def test_mv_of_a_disk_links_the_destination_logs_out_the_source_and_relinks_it(recorder):
    recorder.answer("find", DISK, out=f"l {BY_PATH}\n", host="node1")
    recorder.answer("find", DISK, out=f"l {NODE2_DEVICE}\n", host="node2")
    note = tm.mv(HostPath("node1", DISK), HostPath("node2", DISK), recorder.cfg, recorder.hosts)
    assert recorder.calls == [("node1", describe(DISK)), ("node1", describe(CARRIER)),
                              *[("node2", argv) for argv in ln_commands("node2")],
                              ("node1", LOGOUT), ("node1", FORGET),
                              # the source path: what the destination has (one file on a shared system datastore)
                              ("node1", ["ln", "-sfnT", NODE2_DEVICE, DISK]), ("node1", carry(IQN, "node2"))]
    assert recorder.sessions == [("node1", False), ("node2", False)]
    assert note == f"moved {IQN} from node1:{DISK} to node2:{DISK}"


def test_mv_reads_the_iqn_from_the_carrier_link(recorder):
    recorder.answer("find", DISK, out=f"l {BY_PATH}\n", host="node1")
    recorder.answer("find", CARRIER, out=f"l {IQN2}\n", host="node1")
    note = tm.mv(HostPath("node1", DISK), HostPath("node2", DISK), recorder.cfg, recorder.hosts)
    assert note == f"moved {IQN2} from node1:{DISK} to node2:{DISK}"
    assert ["iscsiadm", "-m", "node", "--targetname", IQN2, "-p", "tgt1", "--login"] in recorder.argvs("node2")
    assert recorder.argvs("node1")[:2] == [describe(DISK), describe(CARRIER)]
    assert recorder.argvs("node1")[-1] == carry(IQN2, "node2")


def test_mv_to_a_no_iscsi_host_links_the_volume_on_both_paths(recorder):
    recorder.answer("find", DISK, out=f"l {BY_PATH}\n", host="node1")
    tm.mv(HostPath("node1", DISK), HostPath("frontend", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs("frontend") == [["mkdir", "-p", VM_DIR], describe(DISK),
                                          ["ln", "-sfnT", "/dev/vg-one/lv-one-7", DISK], carry(IQN, "frontend")]
    assert recorder.argvs("node1")[2:] == [LOGOUT, FORGET, ["ln", "-sfnT", "/dev/vg-one/lv-one-7", DISK],
                                           carry(IQN, "frontend")]


def test_mv_from_a_no_iscsi_host_logs_out_nothing_there(recorder):
    recorder.answer("find", DISK, out="l /dev/vg-one/lv-one-7\n", host="frontend")
    recorder.answer("find", CARRIER, out=f"l {IQN}\n", host="frontend")
    recorder.answer("find", DISK, out=f"l {NODE2_DEVICE}\n", host="node2")
    tm.mv(HostPath("frontend", DISK), HostPath("node2", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs("node2") == ln_commands("node2")
    assert recorder.argvs("frontend") == [describe(DISK), describe(CARRIER), ["ln", "-sfnT", NODE2_DEVICE, DISK],
                                          carry(IQN, "node2")]


def test_mv_within_one_host_links_the_new_path_and_removes_the_old(recorder):
    other = "/var/lib/one/datastores/1/9/disk.0"
    recorder.answer("find", DISK, out=f"l {BY_PATH}\n")
    recorder.fail(*LOGIN, rc=15, stderr="iscsiadm: session exists")
    note = tm.mv(HostPath("node1", DISK), HostPath("node1", other), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [describe(DISK), describe(CARRIER),
                                ["mkdir", "-p", "/var/lib/one/datastores/1/9"], describe(other),
                                *[argv[:-1] + [other] if argv[-1] == DISK else argv for argv in ln_commands()[2:5]],
                                ["timeout", "30", "sh", "-c", tm.WAIT_AND_LINK, "wait-and-link", "/dev/disk/by-path",
                                 IQN, "1", other], describe(other),
                                carry(IQN, "node1", "/var/lib/one/datastores/1/9/.disk.0.iqn"),
                                ["rm", "-f", DISK, CARRIER]]
    assert LOGOUT not in recorder.argvs()  # the session stays: the disk is still on this host
    assert note == f"moved {IQN} from node1:{DISK} to node1:{other}"


def test_mv_whose_login_fails_leaves_the_source_as_it_was(recorder):
    recorder.answer("find", DISK, out=f"l {BY_PATH}\n", host="node1")
    recorder.fail(*LOGIN, rc=24, host="node2", stderr="iscsiadm: Login failed")
    with pytest.raises(OneIscsiError, match="Login failed"):
        tm.mv(HostPath("node1", DISK), HostPath("node2", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs("node1") == [describe(DISK), describe(CARRIER)]
    assert recorder.argvs("node2")[-1] == FORGET


def test_mv_onto_itself_does_nothing(recorder):
    assert tm.mv(HostPath("node1", DISK), HostPath("node1", DISK), recorder.cfg, recorder.hosts) == \
        f"node1:{DISK} is already in place: nothing to move"
    assert recorder.calls == []


def test_mv_of_a_link_that_is_no_disk_is_refused(recorder):
    recorder.answer("find", DISK, out="l /etc/passwd\n")
    with pytest.raises(OneIscsiError, match="points at /etc/passwd, which is not an iSCSI disk"):
        tm.mv(HostPath("node1", DISK), HostPath("node2", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [describe(DISK), describe(CARRIER)]


def test_mv_of_a_directory_streams_it_then_removes_the_source(recorder):
    recorder.answer("find", "/vms/0/9", out="d \n")
    recorder.answer("tar", "-cf", out="tar data")
    tm.mv(HostPath("node1", "/vms/0/9"), HostPath("node2", "/vms/0/9"), recorder.cfg, recorder.hosts)
    assert recorder.calls == [("node1", describe("/vms/0/9")), ("node2", ["mkdir", "-p", "/vms/0/9"]),
                              ("node1", ["tar", "-C", "/vms/0/9", "-cf", "-", "."]),
                              ("node2", ["tar", "-C", "/vms/0/9", "-xf", "-"]), ("node1", ["rm", "-rf", "/vms/0/9"])]
    assert recorder.fed["node2"] == b"tar data"


def test_iqn_of_link(recorder):
    cfg = recorder.cfg
    assert tm.iqn_of_link(BY_PATH, cfg) == IQN
    assert tm.iqn_of_link("/dev/vg-one/lv-one-7", cfg) == IQN
    assert tm.iqn_of_link("/srv/one-iscsi/vg-one/lv-one-7", cfg) == IQN
    assert tm.iqn_of_link("/dev/sda", cfg) is None


# clone: a VM's private copy of a non-persistent image

def test_clone_refused_by_the_configuration_runs_nothing(recorder):
    with pytest.raises(OneIscsiError) as caught:
        tm.clone(IQN, HostPath("node1", DISK), recorder.cfg, recorder.hosts, allowed=False)
    assert str(caught.value) == tm.CLONE_ERROR
    assert recorder.calls == [] and recorder.sessions == []


def private_ln_commands():
    return [[PRIVATE if word == IQN else word for word in argv] for argv in ln_commands()[:-1]] + [carry(PRIVATE)]


def clone_server(recorder):
    """tgt1 with image 7 (its access rules saved) and no copy yet."""
    spec = tgtconf.TargetSpec(IQN, ("/dev/vg-one/lv-one-7",), ALLOWED, *CHAP)
    recorder.answer("cat", "--", conf(IQN), out=tgtconf.render(spec))
    recorder.answer("lvs", out="  8388608\n")
    recorder.answer(*READ_HINT, out="1\n")
    recorder.answer(*make_target(1, PRIVATE), out="new 1\n")
    exported(recorder, 1, PRIVATE, (PRIVATE_LV,), host="tgt1")  # once made


def test_clone_copies_the_image_on_the_target_server_with_its_access_rules_then_links_the_copy(recorder):
    clone_server(recorder)
    note = tm.clone(IQN, HostPath("node1", DISK), recorder.cfg, recorder.hosts, allowed=True)
    assert recorder.argvs("tgt1") == [
        lio_probe(IQN),
        ["cat", "--", conf(IQN)],
        ["lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size", "vg-one/lv-one-7"],
        ["lvcreate", "--yes", "-W", "y", "-L", "8M", "-n", "lv-one-9-0", "vg-one"],
        READ_HINT, make_target(1, PRIVATE), *allowed(1), new_lun(1, PRIVATE_LV), *saved(PRIVATE),
        copier("/dev/vg-one/lv-one-7", PRIVATE_LV), *found(1, PRIVATE)]
    assert recorder.argvs("node1") == private_ln_commands()
    assert ("release", "tgt1", "/run/lock/one-iscsi.lock") in recorder.locks  # not held while copying
    assert ("hold", "tgt1", "/run/lock/one-iscsi.lock.vg-one.lv-one-9-0") in recorder.locks
    assert note == f"copied {IQN} to {PRIVATE}; logged in to {PRIVATE} on node1, linked {DISK}"


def test_clone_whose_link_fails_removes_the_copy_again(recorder):
    clone_server(recorder)
    recorder.fail(*LOGIN[:4], PRIVATE, "--login", rc=24, stderr="iscsiadm: Login failed")
    with pytest.raises(OneIscsiError, match="Login failed"):
        tm.clone(IQN, HostPath("node1", DISK), recorder.cfg, recorder.hosts, allowed=True)
    node = ["iscsiadm", "-m", "node", "--targetname", PRIVATE]
    assert recorder.argvs("node1") == [*private_ln_commands()[:5], [*node, "-o", "delete"]]
    assert recorder.argvs("tgt1")[-6:] == [*found(1, PRIVATE, sessions=True), delete_target(1), forget(PRIVATE),
                                           ["lvremove", "-f", "vg-one/lv-one-9-0"]]


def test_clone_of_an_image_without_its_saved_configuration_makes_nothing(recorder):
    recorder.fail("cat", "--", conf(IQN), stderr=f"cat: {conf(IQN)}: No such file or directory")
    with pytest.raises(NotFound, match=f"no saved configuration of target {IQN} on tgt1"):
        tm.clone(IQN, HostPath("node1", DISK), recorder.cfg, recorder.hosts, allowed=True)
    assert recorder.argvs() == [lio_probe(IQN), ["cat", "--", conf(IQN)]]


@pytest.mark.parametrize("path", [f"{VM_DIR}/disk.x", f"{VM_DIR}/deployment.0", "/var/lib/one/datastores/0/vm/disk.0"])
def test_clone_onto_what_is_not_a_vms_disk_is_refused_before_any_command(recorder, path):
    with pytest.raises(InvalidInput, match="is not a VM's disk"):
        tm.clone(IQN, HostPath("node1", path), recorder.cfg, recorder.hosts, allowed=True)
    assert recorder.calls == []


def test_disk_ids_and_carrier_of():
    assert tm.disk_ids(HostPath("node1", DISK)) == (9, 0)
    assert tm.disk_ids(HostPath("node1", "/srv/ds/100/12345/disk.17")) == (12345, 17)
    for path in ["/disk.0", f"{VM_DIR}/disk.", "/var/lib/one/datastores/0/9a/disk.0"]:
        with pytest.raises(InvalidInput):
            tm.disk_ids(HostPath("node1", path))
    assert tm.carrier_of(DISK) == CARRIER
    assert tm.carrier_of("disk.3") == ".disk.3.iqn"


# disk_iqn: what the transfer actions learn of a disk

@pytest.mark.parametrize("carrier, disk, iqn", [
    (f"l {IQN2}\n", f"l {BY_PATH}\n", IQN2),           # the carrier first
    ("l not-an-iqn\n", f"l {BY_PATH}\n", IQN),        # a carrier that names no IQN: the disk link
    (None, f"l {BY_PATH}\n", IQN),                     # a link of an earlier version
    (None, "l /dev/vg-one/lv-one-7\n", IQN),           # a NO_ISCSI host's link of an earlier version
    (None, "l /dev/sda\n", None),
    (None, "f \n", None),
    (None, None, None),
])
def test_disk_iqn(recorder, carrier, disk, iqn):
    gone = "find: No such file or directory"
    for path, out in [(CARRIER, carrier), (DISK, disk)]:
        if out is None:
            recorder.fail("find", path, stderr=gone)
        else:
            recorder.answer("find", path, out=out)
    with recorder.runner("node1").session() as session:
        assert tm.disk_iqn(session, DISK, recorder.cfg) == iqn
    assert recorder.argvs() == [describe(CARRIER), *([] if carrier == f"l {IQN2}\n" else [describe(DISK)])]


# cpds: save-as of a disk

def test_cpds_copies_the_disk_into_the_image_on_the_target_server(recorder):
    recorder.answer("find", CARRIER, out=f"l {IQN}\n")
    exported(recorder, 2, IQN2, ("/dev/vg-one/lv-one-8",))
    recorder.answer("volume-copy", out="copied 8388608 bytes\n")
    note = tm.cpds(HostPath("node1", DISK), IQN2, "-1", recorder.cfg, recorder.hosts)
    assert note == f"saved {IQN} into {IQN2}: copied 8388608 bytes"
    assert recorder.calls == [("node1", describe(CARRIER)), ("tgt1", lio_probe(IQN2)), ("tgt1", cat(IQN2)),
                              ("tgt1", found(2, IQN2)[1]),
                              ("tgt1", copier("/dev/vg-one/lv-one-7", "/dev/vg-one/lv-one-8"))]  # no logout


def test_cpds_without_a_snapshot_argument_is_the_disk_itself(recorder):
    recorder.answer("find", CARRIER, out=f"l {IQN}\n")
    recorder.answer(*SHOW, out=listing((2, IQN2, ("/dev/vg-one/lv-one-8",))))
    tm.cpds(HostPath("node1", DISK), IQN2, "", recorder.cfg, recorder.hosts)
    assert recorder.argvs()[-1] == copier("/dev/vg-one/lv-one-7", "/dev/vg-one/lv-one-8")


@pytest.mark.parametrize("snapshot", ["0", "3", "x"])
def test_cpds_of_a_snapshot_is_refused_before_any_command(recorder, snapshot):
    with pytest.raises(InvalidInput) as caught:
        tm.cpds(HostPath("node1", DISK), IQN2, snapshot, recorder.cfg, recorder.hosts)
    assert str(caught.value) == f"snapshot {snapshot}: disk snapshots are not supported by the iscsi driver"
    assert recorder.calls == []


def test_cpds_of_what_is_no_iscsi_disk_copies_nothing(recorder):
    recorder.answer("find", DISK, out="l /dev/sda\n")
    with pytest.raises(OneIscsiError) as caught:
        tm.cpds(HostPath("node1", DISK), IQN2, "-1", recorder.cfg, recorder.hosts)
    assert str(caught.value) == f"node1:{DISK} is not an iSCSI disk: nothing to copy into {IQN2}"
    assert recorder.argvs("tgt1") == []


# resize

LVS_7 = ["lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size", "vg-one/lv-one-7"]
GROWN = [LVS_7, lio_probe(), *found(3), ["lvextend", "-L", "16M", "vg-one/lv-one-7"],
         readd_lun(3, "/dev/vg-one/lv-one-7")]


def resize_server(recorder, size=8 * 1024 * 1024):
    recorder.answer("find", CARRIER, out=f"l {IQN}\n")
    recorder.answer("lvs", out=f"  {size}\n")
    exported(recorder, 3, IQN, ("/dev/vg-one/lv-one-7",))


def test_resize_grows_the_volume_adds_the_lun_again_and_rescans_on_the_host(recorder):
    resize_server(recorder)
    note = tm.resize(HostPath("node1", DISK), "16", recorder.cfg, recorder.hosts)
    assert recorder.calls == [("node1", describe(CARRIER)), *[("tgt1", argv) for argv in GROWN],
                              ("node1", [*NODE, "--rescan"])]
    assert recorder.locks == [("hold", "tgt1", "/run/lock/one-iscsi.lock.vg-one.lv-one-7")]
    assert note == f"grew /dev/vg-one/lv-one-7 from 8 to 16 MiB; rescanned {IQN} on node1"


def test_resize_on_a_no_iscsi_host_rescans_nothing(recorder):
    resize_server(recorder)
    note = tm.resize(HostPath("frontend", DISK), "16", recorder.cfg, recorder.hosts)
    assert recorder.argvs("frontend") == [describe(CARRIER)]
    assert recorder.argvs("tgt1") == GROWN
    assert note == "grew /dev/vg-one/lv-one-7 from 8 to 16 MiB"


def test_resize_never_shrinks(recorder):
    resize_server(recorder, size=32 * 1024 * 1024)
    note = tm.resize(HostPath("node1", DISK), "16", recorder.cfg, recorder.hosts)
    assert recorder.argvs("tgt1") == [LVS_7]
    assert note.startswith("/dev/vg-one/lv-one-7 already has 32 MiB: not shrunk")


@pytest.mark.parametrize("size", ["0", "-1", "1e3", "16M", "", "１６"])
def test_resize_refuses_a_bad_size_before_any_command(recorder, size):
    with pytest.raises(InvalidInput, match="size must be a positive number of MB"):
        tm.resize(HostPath("node1", DISK), size, recorder.cfg, recorder.hosts)
    assert recorder.calls == []


def test_resize_of_what_is_no_iscsi_disk_grows_nothing(recorder):
    with pytest.raises(OneIscsiError, match=f"^node1:{DISK} is not an iSCSI disk: nothing to resize$"):
        tm.resize(HostPath("node1", DISK), "16", recorder.cfg, recorder.hosts)
    assert recorder.argvs("tgt1") == []


# live migration

DISK1 = f"{VM_DIR}/disk.1"
CARRIER1 = f"{VM_DIR}/.disk.1.iqn"


def two_disks(recorder):
    """VM 9 on node1 with disk 0 of image 7 and disk 1 of image 8."""
    recorder.answer("find", CARRIER, out=f"l {IQN}\n", host="node1")
    recorder.answer("find", CARRIER1, out=f"l {IQN2}\n", host="node1")


def node(iqn, *args):
    return ["iscsiadm", "-m", "node", "--targetname", iqn, *args]


def linking(iqn, path, carrier):
    """ln of iqn at path on node2."""
    return [["mkdir", "-p", VM_DIR], describe(path), node(iqn, "-p", "tgt1", "-o", "new"),
            node(iqn, "-p", "tgt1", "-o", "update", "-n", "node.startup", "-v", "manual"),
            node(iqn, "-p", "tgt1", "--login"),
            ["timeout", "30", "sh", "-c", tm.WAIT_AND_LINK, "wait-and-link", "/dev/disk/by-path", iqn, "1", path],
            describe(path), carry(iqn, "node2", carrier)]


def migrate(recorder, step, disks=(0, 1), src="node1", dst="node2"):
    return tm.migrate(step, src, dst, VM_DIR, list(disks), recorder.cfg, recorder.hosts)


def test_premigrate_links_the_disks_on_the_destination(recorder):
    two_disks(recorder)
    assert migrate(recorder, "pre") == f"linked {IQN} {IQN2} on node2"
    assert recorder.argvs("node1") == [describe(CARRIER), describe(CARRIER1)]
    assert recorder.argvs("node2") == [*linking(IQN, DISK, CARRIER), *linking(IQN2, DISK1, CARRIER1)]


def test_premigrate_that_fails_logs_the_destination_out_of_the_disks_it_linked(recorder):
    two_disks(recorder)
    recorder.fail(*node(IQN2, "-p", "tgt1", "--login"), rc=24, stderr="iscsiadm: Login failed", host="node2")
    with pytest.raises(StepFailed) as caught:
        migrate(recorder, "pre")
    assert str(caught.value).startswith(f"linking {DISK1} failed on node2:")
    assert recorder.argvs("node2") == [*linking(IQN, DISK, CARRIER), *linking(IQN2, DISK1, CARRIER1)[:5],
                                       node(IQN2, "-o", "delete"),  # ln's own undo
                                       node(IQN2, "--logout"), node(IQN2, "-o", "delete"),
                                       node(IQN, "--logout"), node(IQN, "-o", "delete")]


def test_postmigrate_logs_the_source_out(recorder):
    two_disks(recorder)
    assert migrate(recorder, "post") == f"logged out of {IQN} {IQN2} on node1"
    assert recorder.argvs("node1") == [describe(CARRIER), describe(CARRIER1), node(IQN, "--logout"),
                                       node(IQN, "-o", "delete"), node(IQN2, "--logout"), node(IQN2, "-o", "delete")]
    assert recorder.argvs("node2") == []


def test_postmigrate_from_a_no_iscsi_host_logs_out_nothing(recorder):
    recorder.answer("find", CARRIER, out=f"l {IQN}\n", host="frontend")
    assert migrate(recorder, "post", disks=[0], src="frontend") == "nothing to log out on frontend"
    assert recorder.argvs() == [describe(CARRIER)]


def test_failmigrate_logs_the_destination_out_and_links_the_source_again(recorder):
    recorder.answer("find", CARRIER, out=f"l {IQN}\n", host="node1")
    recorder.fail(*node(IQN, "-p", "tgt1", "--login"), rc=15, stderr="iscsiadm: session exists", host="node1")
    note = migrate(recorder, "fail", disks=[0])
    assert note == f"logged out of {IQN} on node2, links on node1 as before"
    assert recorder.argvs("node2") == [LOGOUT, FORGET]
    assert recorder.argvs("node1") == [describe(CARRIER), *ln_commands()]
    assert recorder.calls.index(("node2", FORGET)) < recorder.calls.index(("node1", ln_commands()[0]))


@pytest.mark.parametrize("step", ["pre", "post", "fail"])
def test_migration_of_a_vm_without_iscsi_disks_or_within_one_host_does_nothing(recorder, step):
    assert migrate(recorder, step, disks=[]) == "nothing to do"
    assert migrate(recorder, step, dst="node1") == "nothing to do"
    assert recorder.calls == [] and recorder.sessions == []


def test_migration_of_a_disk_that_is_not_there_changes_nothing(recorder):
    recorder.answer("find", CARRIER, out=f"l {IQN}\n", host="node1")
    recorder.fail("find", CARRIER1, stderr="find: No such file or directory", host="node1")
    recorder.fail("find", DISK1, stderr="find: No such file or directory", host="node1")
    with pytest.raises(OneIscsiError) as caught:
        migrate(recorder, "pre")
    assert str(caught.value) == f"no iSCSI disk at {DISK1} on node1"
    assert recorder.argvs("node2") == []
