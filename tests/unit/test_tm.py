"""The transfer actions, run against a recording Runner (no process is
started): the exact commands on each host, and what a failure takes back."""
import dataclasses

import pytest

from oneiscsi import tm
from oneiscsi.errors import OneIscsiError
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
    assert recorder.argvs() == [["mkdir", "-p", "/var/lib/one/datastores/0/9"],
                                ["ln", "-sfn", "/dev/vg-one/lv-one-7", DISK]]
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
    assert recorder.argvs() == [*ln_commands()[:4], FORGET]


def test_ln_failed_node_record_is_taken_back(recorder):
    recorder.fail("-o", "update", rc=6, stderr="iscsiadm: no records found")
    with pytest.raises(OneIscsiError):
        tm.ln(IQN, HostPath("node1", DISK), recorder.cfg, recorder.hosts)
    assert recorder.argvs() == [*ln_commands()[:3], FORGET]


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


def test_delete_of_a_directory_and_of_nothing(recorder):
    recorder.answer("find", "/vms/9", out="d \n")
    recorder.fail("find", "/vms/8", stderr="find: '/vms/8': No such file or directory")
    assert tm.delete(HostPath("node1", "/vms/9"), recorder.cfg, recorder.hosts) == "removed node1:/vms/9"
    assert tm.delete(HostPath("node1", "/vms/8"), recorder.cfg, recorder.hosts) == \
        "node1:/vms/8 does not exist: nothing to delete"
    assert recorder.argvs() == [describe("/vms/9"), ["rm", "-rf", "/vms/9"], describe("/vms/8")]


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
    recorder.answer("find", "/vms/9", out="d \n")
    recorder.answer("tar", "-cf", out="tar data")
    tm.mv(HostPath("node1", "/vms/9"), HostPath("node2", "/vms/9"), recorder.cfg, recorder.hosts)
    assert recorder.calls == [("node1", describe("/vms/9")), ("node2", ["mkdir", "-p", "/vms/9"]),
                              ("node1", ["tar", "-C", "/vms/9", "-cf", "-", "."]),
                              ("node2", ["tar", "-C", "/vms/9", "-xf", "-"]), ("node1", ["rm", "-rf", "/vms/9"])]
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
