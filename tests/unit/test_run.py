import os
import shlex
import stat

import pytest

from oneiscsi import config
from oneiscsi.errors import InvalidInput
from oneiscsi.run import CommandError, Runner, is_local


def cfg(**values):
    return config.load(env={f"ONE_ISCSI_{key}": value for key, value in values.items()})


@pytest.fixture
def fake_ssh(tmp_path):
    """An `ssh` stand-in that logs each invocation and runs the remote command
    with sh locally: it checks how commands are batched and quoted, without a
    network. The real sshd is used in tests/integration."""
    log = tmp_path / "ssh.log"
    script = tmp_path / "fake-ssh"
    script.write_text('#!/bin/sh\necho session >> "%s"\neval "command=\\${$#}"\nexec sh -c "$command"\n' % log)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def test_local_names():
    assert is_local("localhost") and is_local("127.0.0.1") and is_local("::1")
    assert is_local(os.uname().nodename)
    assert not is_local("tgtserver")


def test_run_returns_stdout():
    assert Runner("localhost", cfg()).run(["echo", "hello world"]) == "hello world\n"


def test_resolve_applies_tool_prefix_and_sudo(mocker):
    c = cfg(TGTADM="tgtadm -C 7", SUDO="sudo -n")
    assert Runner("tgtserver", c).resolve(["tgtadm", "--op", "show"]) == [
        "sudo", "-n", "tgtadm", "-C", "7", "--op", "show"]
    assert Runner("tgtserver", c).resolve(["ln", "-s", "/x"]) == ["ln", "-s", "/x"]
    mocker.patch("oneiscsi.run.os.geteuid", return_value=0)
    assert Runner("localhost", c).resolve(["tgtadm"]) == ["tgtadm", "-C", "7"]
    mocker.patch("oneiscsi.run.os.geteuid", return_value=1000)
    assert Runner("localhost", c).resolve(["tgtadm"]) == ["sudo", "-n", "tgtadm", "-C", "7"]
    assert Runner("tgtserver", cfg(SUDO="")).resolve(["tgtadm"]) == ["tgtadm"]


def test_failure_raises_command_error_with_last_stderr_line():
    with pytest.raises(CommandError) as caught:
        Runner("localhost", cfg()).run(["sh", "-c", "echo one >&2; echo two >&2; exit 3"])
    err = caught.value
    assert (err.rc, err.host, err.argv[0]) == (3, "localhost", "sh")
    assert "one" in err.stderr
    assert str(err) == "sh failed on localhost (exit 3): two"


def test_missing_program():
    with pytest.raises(CommandError, match="exit 127.*no-such-program-xyz: command not found"):
        Runner("localhost", cfg()).run(["no-such-program-xyz"])


def test_timeout_is_enforced():
    with pytest.raises(CommandError, match=r"sleep failed on localhost \(timed out\)") as caught:
        Runner("localhost", cfg(TIMEOUT="0.2")).run(["sleep", "30"])
    assert caught.value.rc is None


def test_dry_run_prints_changes_and_runs_queries(tmp_path, capsys):
    runner = Runner("localhost", cfg(TGTADM="tgtadm -C 7", SUDO=""), dry_run=True)
    target = tmp_path / "made by touch"
    assert runner.run(["touch", str(target)]) == ""
    assert not target.exists()
    assert runner.run(["echo", "read"], query=True) == "read\n"
    runner.run_all([["tgtadm", "--op", "new"], ["touch", str(target)]])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == shlex.join(["touch", str(target)])
    assert lines[1] == "tgtadm -C 7 --op new"
    assert shlex.split(lines[2]) == ["touch", str(target)]


def test_dry_run_remote_prints_ssh_command_with_quoted_remote_command(capsys):
    runner = Runner("tgtserver", cfg(SUDO="sudo", SSH="ssh -F cfg"), dry_run=True)
    runner.run(["tgtadm", "--backing-store", "/a b/$(x)"])
    ssh = shlex.split(capsys.readouterr().out.strip())
    assert ssh[:2] == ["ssh", "-F"] and ssh[-3:-1] == ["--", "tgtserver"]
    assert shlex.split(ssh[-1]) == ["sudo", "tgtadm", "--backing-store", "/a b/$(x)"]


@pytest.mark.parametrize("host", ["-oProxyCommand=touch x", "a b", "", "host;id", "h\nx"])
def test_hostile_host_names_are_refused(host):
    with pytest.raises(InvalidInput, match="invalid host name"):
        Runner(host, cfg())


def test_remote_batch_is_one_session_and_stops_at_first_failure(fake_ssh, tmp_path):
    script, log = fake_ssh
    canary = tmp_path / "canary"
    runner = Runner("tgtserver", cfg(SSH=str(script), SUDO=""))
    with pytest.raises(CommandError) as caught:
        runner.run_all([["echo", "first"], ["sh", "-c", "echo boom >&2; exit 4"], ["touch", str(canary)]])
    err = caught.value
    assert err.argv == ["sh", "-c", "echo boom >&2; exit 4"]
    assert (err.rc, err.host, err.stderr.strip()) == (4, "tgtserver", "boom")
    assert not canary.exists()
    assert len(log.read_text().splitlines()) == 1


def test_remote_arguments_reach_the_host_unchanged(fake_ssh, tmp_path):
    script, _ = fake_ssh
    canary = tmp_path / "canary"
    hostile = f"a b 'c' \"d\" $(touch {canary}) `touch {canary}`; touch {canary}"
    out = Runner("tgtserver", cfg(SSH=str(script), SUDO="")).run_all([["echo", hostile], ["echo", "x"]])
    assert out == f"{hostile}\nx\n"
    assert not canary.exists()


def test_ssh_failure_names_ssh_and_host(tmp_path):
    script = tmp_path / "broken-ssh"
    script.write_text("#!/bin/sh\necho 'ssh: connect to host tgtserver port 22: Connection refused' >&2\nexit 255\n")
    script.chmod(0o755)
    with pytest.raises(CommandError) as caught:
        Runner("tgtserver", cfg(SSH=str(script))).run(["tgtadm"])
    assert str(caught.value) == ("cannot reach host over ssh: ssh failed on tgtserver (exit 255): "
                                 "ssh: connect to host tgtserver port 22: Connection refused")


def test_sudo_asking_for_a_password_gets_a_hint():
    err = CommandError(["tgtadm", "--op", "show"], "tgt1", 1, "sudo: a password is required\n")
    assert str(err) == ("sudo on tgt1 asks for a password: add a NOPASSWD sudoers rule for tgtadm (see README): "
                        "tgtadm failed on tgt1 (exit 1): sudo: a password is required")
