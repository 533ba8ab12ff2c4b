import pytest

from oneiscsi import iscsiadm
from oneiscsi.errors import AlreadyDone, CommandError

IQN = "iqn.2012-02.org.opennebula:tgt.vg-one.lv-one-7"


def test_discovery_command():
    assert iscsiadm.discovery("tgt").argv == ("iscsiadm", "-m", "discovery", "-t", "st", "-p", "tgt")


def test_login_command():
    login = iscsiadm.login(IQN, "tgt")
    assert login.argv == ("iscsiadm", "-m", "node", "--targetname", IQN, "-p", "tgt", "--login")
    assert login.privileged and not login.query


def test_logout_command():
    assert iscsiadm.logout(IQN).argv == ("iscsiadm", "-m", "node", "--targetname", IQN, "--logout")


@pytest.mark.parametrize("cmd, rc, text", [(iscsiadm.login(IQN, "tgt"), 15, "session exists"),
                                            (iscsiadm.logout(IQN), 21, "No matching sessions found")])
def test_already_done_is_told_apart_by_exit_code(cmd, rc, text):
    assert isinstance(cmd.explain(CommandError("iscsiadm", "node1", rc, text)), AlreadyDone)
    assert cmd.explain(CommandError("iscsiadm", "node1", 8, "iscsiadm: connection timed out")) is None


def test_node_record_commands():
    assert iscsiadm.new_node(IQN, "10.0.0.1:3260").argv == (
        "iscsiadm", "-m", "node", "--targetname", IQN, "-p", "10.0.0.1:3260", "-o", "new")
    delete = iscsiadm.delete_node(IQN)
    assert delete.argv == ("iscsiadm", "-m", "node", "--targetname", IQN, "-o", "delete")
    assert delete.accept == {iscsiadm.NO_SESSION_RC}  # no record is fine


def test_chap_password_is_secret():
    *_, password = iscsiadm.chap_settings(IQN, "tgt", "user", "s3cret-pass-12")
    assert password.argv[-1] == "s3cret-pass-12"
    assert password.masked()[-1] == "********"


def test_portal():
    assert iscsiadm.portal("tgt1", 3260) == "tgt1"
    assert iscsiadm.portal("tgt1", 3261) == "tgt1:3261"
    assert iscsiadm.portal("fd00::5", 3261) == "[fd00::5]:3261"


@pytest.mark.parametrize("host", ["tgt1", "tgt1.example.com", "10.0.0.1", "a", "tgt-1.example.com", "TGT1"])
def test_plain_hosts(host):
    assert iscsiadm.is_plain_host(host)


@pytest.mark.parametrize("host", ["", "tgt1:3260", "root@tgt1", "[fd00::5]", "fd00::5", "-oProxyCommand=x",
                                  "tgt1.", ".tgt1", "tgt 1", "tgt1;x", "tgt_1", "tgt1/x", "a" * 254])
def test_hosts_that_are_not_plain(host):
    assert not iscsiadm.is_plain_host(host)


def test_rescan_command():
    rescan = iscsiadm.rescan(IQN)
    assert rescan.argv == ("iscsiadm", "-m", "node", "--targetname", IQN, "--rescan")
    assert rescan.privileged and not rescan.query
