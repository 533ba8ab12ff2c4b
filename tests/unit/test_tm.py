from oneiscsi import config, tm
from oneiscsi.run import CommandError, accepted_codes

IQN = "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-7"


def test_wait_and_link_passes_values_as_arguments_not_code():
    argv = tm.wait_and_link("/dev/disk/by-path", IQN, "/var/lib/one/0/7/disk.0", 30)
    assert argv[:5] == ["timeout", "30", "sh", "-c", tm.WAIT_AND_LINK]
    assert argv[6:] == ["/dev/disk/by-path", IQN, "1", "/var/lib/one/0/7/disk.0"]


class FakeHost:
    """Answers like iscsiadm on a host with no session and no node record."""

    def __init__(self):
        self.calls = []

    def run(self, argv, query=False):
        self.calls.append(list(argv))
        if "--logout" in argv:
            raise CommandError(argv, "node1", 21, "iscsiadm: No matching sessions found")
        if 21 not in accepted_codes(argv):
            raise AssertionError("no session or record must be accepted")
        return ""


def test_logout_and_forget_without_session_is_fine():
    host = FakeHost()
    assert tm.logout_and_forget(host, IQN) is False
    assert host.calls == [["iscsiadm", "-m", "node", "--targetname", IQN, "--logout"],
                          ["iscsiadm", "-m", "node", "--targetname", IQN, "-o", "delete"]]


def test_iqn_of_link():
    cfg = config.load(env={"ONE_ISCSI_HOST": "tgt1"})
    assert tm.iqn_of_link(f"/dev/disk/by-path/ip-10.0.0.1:3260-iscsi-{IQN}-lun-1", cfg) == IQN
    assert tm.iqn_of_link("/dev/vg-one/lv-one-7", cfg) == IQN
    assert tm.iqn_of_link("/srv/one-iscsi/vg-one/lv-one-7", cfg) == IQN
    assert tm.iqn_of_link("/dev/sda", cfg) is None
