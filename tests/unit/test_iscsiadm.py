from oneiscsi import iscsiadm

IQN = "iqn.2012-02.org.opennebula:tgt.vg-one.lv-one-7"


def test_discovery_argv():
    assert iscsiadm.discovery("tgt") == ["iscsiadm", "-m", "discovery", "-t", "st", "-p", "tgt"]


def test_login_argv():
    assert iscsiadm.login(IQN, "tgt") == [
        "iscsiadm", "-m", "node", "--targetname", IQN, "-p", "tgt", "--login"]


def test_logout_argv():
    assert iscsiadm.logout(IQN) == ["iscsiadm", "-m", "node", "--targetname", IQN, "--logout"]


def test_node_record_argvs():
    assert iscsiadm.new_node(IQN, "10.0.0.1:3260") == [
        "iscsiadm", "-m", "node", "--targetname", IQN, "-p", "10.0.0.1:3260", "-o", "new"]
    assert iscsiadm.delete_node(IQN) == ["iscsiadm", "-m", "node", "--targetname", IQN, "-o", "delete"]
    assert iscsiadm.show_node(IQN) == ["iscsiadm", "-m", "node", "--targetname", IQN]


def test_portal():
    assert iscsiadm.portal("tgt1", 3260) == "tgt1"
    assert iscsiadm.portal("tgt1", 3261) == "tgt1:3261"
    assert iscsiadm.portal("fd00::5", 3261) == "[fd00::5]:3261"
