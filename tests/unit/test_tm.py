"""The transfer actions, run against a recording Runner (no process is
started): the exact commands on each host, and what a failure takes back."""
import dataclasses

import pytest

from oneiscsi import initiator, tm
from oneiscsi.errors import SHOWN, InvalidInput, OneIscsiError
from oneiscsi.tm import HostPath

IQN = "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-7"
DISK = "/var/lib/one/datastores/0/9/disk.0"
BY_PATH = f"/dev/disk/by-path/ip-10.0.0.1:3260-iscsi-{IQN}-lun-1"
NODE = ["iscsiadm", "-m", "node", "--targetname", IQN]
LOGIN = [*NODE, "-p", "tgt1", "--login"]
LOGOUT = [*NODE, "--logout"]
FORGET = [*NODE, "-o", "delete"]


def ln_commands():
    return [["mkdir", "-p", "/var/lib/one/datastores/0/9"],
            describe(DISK),
            [*NODE, "-p", "tgt1", "-o", "new"],
            [*NODE, "-p", "tgt1", "-o", "update", "-n", "node.startup", "-v", "manual"],
            LOGIN,
            ["timeout", "30", "sh", "-c", tm.WAIT_AND_LINK, "wait-and-link", "/dev/disk/by-path", IQN, "1", DISK]]


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
                                ["ln", "-sfnT", "/dev/vg-one/lv-one-7", DISK]]
    assert note == f"linked frontend:{DISK} to /dev/vg-one/lv-one-7"


def test_ln_when_already_logged_in_keeps_the_session_even_if_linking_fails(recorder):
    recorder.fail(*LOGIN, rc=15, stderr="iscsiadm: session exists")
    recorder.fail("wait-and-link", rc=1, stderr="ln: failed to create symbolic link")
    with pytest.raises(OneIscsiError, match="ln: failed"):
        tm.ln(IQN, HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == ln_commands()  # no logout, no node record deleted: they were there before


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


def test_mvds_logs_out_and_forgets(recorder):
    assert tm.mvds(HostPath("node1", DISK), IQN, recorder.cfg, recorder.hosts) == f"logged out of {IQN} on node1"
    assert recorder.argvs() == [LOGOUT, FORGET]


def test_mvds_without_a_session_is_fine(recorder):
    recorder.fail(*LOGOUT, rc=21, stderr="iscsiadm: No matching sessions found")
    recorder.fail(*FORGET, rc=21, stderr="iscsiadm: No records found")
    note = tm.mvds(HostPath("node1", DISK), IQN, recorder.cfg, recorder.hosts)
    assert note == f"no session to {IQN} on node1: nothing to log out"
    assert recorder.argvs() == [LOGOUT, FORGET]


def test_mvds_on_a_no_iscsi_host_runs_nothing(recorder):
    tm.mvds(HostPath("frontend", DISK), IQN, recorder.cfg, recorder.hosts)
    assert recorder.calls == []


def describe(path):
    return list(tm.describe(path).argv)


def test_delete_of_a_disk_logs_out_then_removes_the_link(recorder):
    recorder.answer("find", DISK, out=f"l {BY_PATH}\n")
    note = tm.delete(HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [describe(DISK), LOGOUT, FORGET, ["rm", "-f", DISK]]
    assert recorder.sessions == [("node1", False)]
    assert note == f"logged out of {IQN} on node1, removed {DISK}"


VM_DIR = "/var/lib/one/datastores/0/9"
IQN2 = "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-8"
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
    assert recorder.argvs() == [describe(VM_DIR), ["rm", "-f", VM_DIR]]


def test_delete_of_a_disk_link_to_a_directory_removes_the_link_only(recorder):
    recorder.answer("find", DISK, out="l /etc\n")
    assert tm.delete(HostPath("node1", DISK), recorder.cfg, recorder.hosts) == f"removed node1:{DISK}"
    assert recorder.argvs() == [describe(DISK), ["rm", "-f", DISK]]


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
    assert recorder.argvs()[-1] == ["ln", "-sfnT", "/dev/vg-one/lv-one-7", DISK]
    assert note == f"linked root@frontend:{DISK} to /dev/vg-one/lv-one-7"
    assert tm.mvds(HostPath("oneadmin@frontend", DISK), IQN, recorder.cfg, recorder.hosts).startswith(
        "oneadmin@frontend uses the volume directly")
    assert initiator.is_iscsi("root@node1", recorder.cfg)
    assert not initiator.is_iscsi("a@b@frontend", recorder.cfg)
    assert initiator.is_iscsi("frontend@node1", recorder.cfg)


def test_mv_of_a_disk_logs_in_on_the_destination_before_out_on_the_source(recorder):
    recorder.answer("find", DISK, out=f"l {BY_PATH}\n", host="node1")
    note = tm.mv(HostPath("node1", DISK), HostPath("node2", DISK), recorder.cfg, recorder.hosts)
    assert recorder.calls == [("node1", describe(DISK)), *[("node2", argv) for argv in ln_commands()],
                              ("node1", LOGOUT), ("node1", FORGET), ("node1", ["rm", "-f", DISK])]
    assert note == f"moved {IQN} from node1:{DISK} to node2:{DISK}"


def test_mv_whose_login_fails_leaves_the_source_as_it_was(recorder):
    recorder.answer("find", DISK, out=f"l {BY_PATH}\n", host="node1")
    recorder.fail(*LOGIN, rc=24, host="node2", stderr="iscsiadm: Login failed")
    with pytest.raises(OneIscsiError, match="Login failed"):
        tm.mv(HostPath("node1", DISK), HostPath("node2", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs("node1") == [describe(DISK)]


def test_mv_onto_itself_does_nothing(recorder):
    assert tm.mv(HostPath("node1", DISK), HostPath("node1", DISK), recorder.cfg, recorder.hosts) == \
        f"node1:{DISK} is already in place: nothing to move"
    assert recorder.calls == []


def test_mv_of_a_link_that_is_no_disk_is_refused(recorder):
    recorder.answer("find", DISK, out="l /etc/passwd\n")
    with pytest.raises(OneIscsiError, match="points at /etc/passwd, which is not an iSCSI disk"):
        tm.mv(HostPath("node1", DISK), HostPath("node2", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [describe(DISK)]


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


def test_clone_is_refused():
    with pytest.raises(OneIscsiError, match=tm.CLONE_ERROR):
        tm.clone()
