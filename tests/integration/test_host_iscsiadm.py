"""`host` subcommands. Node records and logout-without-session use the real
iscsiadm; this machine's kernel has no iSCSI initiator, so discovery and
login cannot succeed here and their success paths are checked by mocking
`Runner.run` (the Runner boundary)."""
import pytest

from oneiscsi import iscsiadm
from oneiscsi.command import command
from oneiscsi.config import load
from oneiscsi.errors import CommandError
from oneiscsi.run import Runner, failure

IQN = "iqn.2012-02.org.opennebula:tgtserver.vg-one.lv-one-7"


@pytest.fixture
def node_record():
    """The real node database: the record is removed after the test."""
    runner = Runner("localhost", load(env={"ONE_ISCSI_SUDO": ""}))
    yield runner
    try:
        runner.run(iscsiadm.delete_node(IQN))
    except CommandError:
        pass


SHOW_NODE = command("iscsiadm", "-m", "node", "--targetname", IQN, query=True)


def test_node_record_builders_work_with_real_iscsiadm(node_record):
    node_record.run(iscsiadm.new_node(IQN, "127.0.0.1:3260"))
    node_record.run(iscsiadm.update_node(IQN, "127.0.0.1:3260", "node.startup", "manual"))
    shown = node_record.run(SHOW_NODE)
    assert f"node.name = {IQN}" in shown
    assert "node.conn[0].address = 127.0.0.1" in shown
    assert "node.startup = manual" in shown
    node_record.run(iscsiadm.delete_node(IQN))
    with pytest.raises(CommandError) as caught:
        node_record.run(SHOW_NODE)
    assert caught.value.rc == 21
    node_record.run(iscsiadm.delete_node(IQN))  # no record is fine


def test_logout_without_session_is_fine_with_real_iscsiadm(cli):
    result = cli("host", "logout", IQN, "--on", "localhost")
    assert (result.rc, result.out, result.err) == (0, "", f"localhost: no session to {IQN}\n")


def test_real_discovery_failure_is_one_line(cli):
    result = cli("host", "discover", "127.0.0.1", "--on", "localhost")
    assert result.rc == 1
    assert result.err.startswith("one-iscsi: error: iscsiadm failed on localhost (exit 12)")
    assert len(result.err.splitlines()) == 1


@pytest.fixture
def calls(mocker):
    """Replaces Runner.run: records (host, argv) and answers like iscsiadm:
    text, or (exit status, stderr) for a failure, which the command explains."""
    seen = []
    answers = {}

    def fake_run(self, cmd):
        seen.append((self.host, list(cmd.argv)))
        answer = answers.get(cmd.argv[-1])
        if isinstance(answer, tuple):
            raise failure(cmd, self.host, *answer)
        return answer or ""

    mocker.patch.object(Runner, "run", fake_run)
    return seen, answers


def test_discover_runs_on_the_named_host(calls, cli):
    seen, answers = calls
    answers["tgtserver"] = f"10.0.0.1:3260,1 {IQN}\n"
    result = cli("host", "discover", "tgtserver", "--on", "node1")
    assert (result.rc, result.out) == (0, f"10.0.0.1:3260,1 {IQN}\n")
    assert seen == [("node1", ["iscsiadm", "-m", "discovery", "-t", "st", "-p", "tgtserver"])]


def test_discover_and_login_use_the_portal_port(calls, cli, monkeypatch):
    seen, _ = calls
    monkeypatch.setenv("ONE_ISCSI_PORTAL_PORT", "3261")
    assert cli("host", "discover", "tgtserver", "--on", "node1").rc == 0
    assert cli("host", "login", IQN, "10.0.0.1", "--on", "node1").rc == 0
    assert seen == [("node1", ["iscsiadm", "-m", "discovery", "-t", "st", "-p", "tgtserver:3261"]),
                    ("node1", list(iscsiadm.login(IQN, "10.0.0.1:3261").argv))]


def test_login_and_existing_session(calls, cli):
    seen, answers = calls
    assert cli("host", "login", IQN, "tgtserver", "--on", "node1").rc == 0
    assert seen == [("node1", list(iscsiadm.login(IQN, "tgtserver").argv))]
    answers["--login"] = (15, "iscsiadm: session exists")
    again = cli("host", "login", IQN, "tgtserver", "--on", "node1")
    assert (again.rc, again.err) == (0, f"node1: already logged in to {IQN}\n")


def test_login_failure_is_reported(calls, cli):
    _, answers = calls
    answers["--login"] = (8, "iscsiadm: Login failed: timeout")
    result = cli("host", "login", IQN, "tgtserver", "--on", "node1")
    assert (result.rc, result.err) == (
        1, "one-iscsi: error: iscsiadm failed on node1 (exit 8): iscsiadm: Login failed: timeout\n")


def test_logout_runs_on_the_named_host(calls, cli):
    seen, _ = calls
    assert cli("host", "logout", IQN, "--on", "node2").rc == 0
    assert seen == [("node2", list(iscsiadm.logout(IQN).argv))]


def test_hostile_host_and_iqn_are_refused_before_running(calls, cli):
    seen, _ = calls
    assert cli("host", "login", IQN, "-oProxyCommand=x", "--on", "node1").rc == 2
    assert cli("host", "login", IQN + ";reboot", "tgtserver", "--on", "node1").rc == 2
    assert cli("host", "login", IQN, "oneadmin@tgtserver", "--on", "node1").err == (
        "one-iscsi: error: target server 'oneadmin@tgtserver' is not a plain host name or IPv4 address "
        "(letters, digits, '.' and '-' only)\n")
    assert cli("host", "logout", IQN, "--on", "node1 node2").rc == 2
    assert seen == []


def test_is_iscsi(cli, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_NO_ISCSI", "front1 tgtserver")
    assert cli("host", "is-iscsi", "node1").rc == 0
    assert cli("host", "is-iscsi", "tgtserver").rc == 1
    assert cli("host", "is-iscsi", "front1").rc == 1
    assert cli("host", "is-iscsi", "front").rc == 0  # whole words only
    assert cli("host", "is-iscsi", "front1.example.com").rc == 0
