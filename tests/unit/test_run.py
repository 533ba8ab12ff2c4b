import os
import shlex
import stat

import pytest

from oneiscsi import config
from oneiscsi.command import command
from oneiscsi.errors import CommandError, InvalidInput, NotFound
from oneiscsi.run import Runner, is_local


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
    assert Runner("localhost", cfg()).run(command("echo", "hello world")) == "hello world\n"


def test_resolve_applies_tool_prefix_and_sudo(mocker):
    c = cfg(TGTADM="tgtadm -C 7", SUDO="sudo -n")
    tgtadm = command("tgtadm", privileged=True)
    assert Runner("tgtserver", c).resolve(command("tgtadm", "--op", "show", privileged=True)) == [
        "sudo", "-n", "tgtadm", "-C", "7", "--op", "show"]
    assert Runner("tgtserver", c).resolve(command("ln", "-s", "/x")) == ["ln", "-s", "/x"]
    assert Runner("tgtserver", c).resolve(command("rm", "/x", privileged=True)) == ["sudo", "-n", "rm", "/x"]
    assert Runner("tgtserver", c).resolve(tgtadm.but(privileged=False)) == ["tgtadm", "-C", "7"]
    mocker.patch("oneiscsi.run.os.geteuid", return_value=0)
    assert Runner("localhost", c).resolve(tgtadm) == ["tgtadm", "-C", "7"]
    mocker.patch("oneiscsi.run.os.geteuid", return_value=1000)
    assert Runner("localhost", c).resolve(tgtadm) == ["sudo", "-n", "tgtadm", "-C", "7"]
    assert Runner("tgtserver", cfg(SUDO="")).resolve(tgtadm) == ["tgtadm"]


def test_failure_raises_command_error_with_last_stderr_line():
    with pytest.raises(CommandError) as caught:
        Runner("localhost", cfg()).run(command("sh", "-c", "echo one >&2; echo two >&2; exit 3"))
    err = caught.value
    assert (err.rc, err.host, err.program) == (3, "localhost", "sh")
    assert "one" in err.stderr
    assert str(err) == "sh failed on localhost (exit 3): two"


def test_missing_program():
    with pytest.raises(CommandError, match="exit 127.*no-such-program-xyz: command not found"):
        Runner("localhost", cfg()).run(command("no-such-program-xyz"))


def test_timeout_is_enforced():
    with pytest.raises(CommandError, match=r"sleep failed on localhost \(timed out\)") as caught:
        Runner("localhost", cfg(TIMEOUT="0.2")).run(command("sleep", "30"))
    assert caught.value.rc is None


def test_dry_run_prints_changes_and_runs_queries(tmp_path, capsys):
    runner = Runner("localhost", cfg(TGTADM="tgtadm -C 7", SUDO=""), dry_run=True)
    target = tmp_path / "made by touch"
    assert runner.run(command("touch", str(target))) == ""
    assert not target.exists()
    assert runner.run(command("echo", "read", query=True)) == "read\n"
    runner.run_all([command("tgtadm", "--op", "new", privileged=True), command("touch", str(target))])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == shlex.join(["touch", str(target)])
    assert lines[1] == "tgtadm -C 7 --op new"
    assert shlex.split(lines[2]) == ["touch", str(target)]


def test_dry_run_remote_prints_ssh_command_with_quoted_remote_command(capsys):
    runner = Runner("tgtserver", cfg(SUDO="sudo", SSH="ssh -F cfg"), dry_run=True)
    runner.run(command("tgtadm", "--backing-store", "/a b/$(x)", privileged=True))
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
        runner.run_all([command("echo", "first"), command("sh", "-c", "echo boom >&2; exit 4"),
                        command("touch", str(canary))])
    err = caught.value
    assert err.program == "sh"
    assert (err.rc, err.host, err.stderr.strip()) == (4, "tgtserver", "boom")
    assert not canary.exists()
    assert len(log.read_text().splitlines()) == 1


def test_remote_arguments_reach_the_host_unchanged(fake_ssh, tmp_path):
    script, _ = fake_ssh
    canary = tmp_path / "canary"
    hostile = f"a b 'c' \"d\" $(touch {canary}) `touch {canary}`; touch {canary}"
    out = Runner("tgtserver", cfg(SSH=str(script), SUDO="")).run_all([command("echo", hostile), command("echo", "x")])
    assert out == f"{hostile}\nx\n"
    assert not canary.exists()


def test_ssh_failure_names_ssh_and_host(tmp_path):
    script = tmp_path / "broken-ssh"
    script.write_text("#!/bin/sh\necho 'ssh: connect to host tgtserver port 22: Connection refused' >&2\nexit 255\n")
    script.chmod(0o755)
    with pytest.raises(CommandError) as caught:
        Runner("tgtserver", cfg(SSH=str(script))).run(command("tgtadm", privileged=True))
    assert str(caught.value) == ("cannot reach host over ssh: ssh failed on tgtserver (exit 255): "
                                 "ssh: connect to host tgtserver port 22: Connection refused")


def test_sudo_asking_for_a_password_gets_a_hint():
    err = CommandError("tgtadm", "tgt1", 1, "sudo: a password is required\n")
    assert str(err) == ("sudo on tgt1 asks for a password: add a NOPASSWD sudoers rule for tgtadm (see README): "
                        "tgtadm failed on tgt1 (exit 1): sudo: a password is required")


def test_accepted_exit_codes_are_not_failures():
    assert Runner("localhost", cfg()).run(command("sh", "-c", "echo done; exit 21", accept=[21])) == "done\n"


def test_a_command_explains_its_own_failure(fake_ssh):
    script, _ = fake_ssh
    missing = command("sh", "-c", "echo 'No such file' >&2; exit 1",
                      explain=lambda err: NotFound(f"gone on {err.host}") if "No such file" in err.stderr else None)
    for runner in (Runner("localhost", cfg()), Runner("tgtserver", cfg(SSH=str(script), SUDO=""))):
        with pytest.raises(NotFound, match=f"gone on {runner.host}"):
            runner.run(missing)


def test_input_reaches_stdin_locally_and_over_ssh(fake_ssh):
    script, _ = fake_ssh
    text = "line one\n$(not run) 'quoted'\n"
    for runner in (Runner("localhost", cfg()), Runner("tgtserver", cfg(SSH=str(script), SUDO=""))):
        assert runner.run(command("cat", input=text)) == text


def test_dry_run_masks_secret_words(capsys):
    runner = Runner("localhost", cfg(SUDO=""), dry_run=True)
    runner.run(command("tgtadm", "--password", "s3cret-pass-12", privileged=True, secrets=["s3cret-pass-12"]))
    printed = capsys.readouterr().out
    assert "s3cret-pass-12" not in printed and "--password '********'" in printed


@pytest.mark.parametrize("keys, connect", [({}, "10"), ({"ONE_ISCSI_CONNECT_TIMEOUT": "2.5"}, "3"),
                                          ({"ONE_ISCSI_TIMEOUT": "4"}, "4")])
def test_ssh_gives_up_connecting_after_connect_timeout_never_after_timeout(keys, connect):
    runner = Runner("tgt1", config.load(env={"ONE_ISCSI_SSH": "ssh", **keys}))
    assert runner.ssh_argv("true")[:5] == ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect}"]


def test_large_input_and_output_pass_locally_without_a_deadlock():
    text = "0123456789abcdef\n" * 65536  # 1 MiB each way: more than a pipe holds
    assert Runner("localhost", cfg()).run(command("cat", input=text)) == text


def test_a_command_that_reads_no_input_is_judged_by_its_exit_status():
    ignored = command("sh", "-c", "exec 0<&-; echo done", input="x" * (1 << 20))
    assert Runner("localhost", cfg()).run(ignored) == "done\n"


def test_a_command_killed_by_its_timeout_leaves_no_process(tmp_path):
    pid_file = tmp_path / "pid"
    with pytest.raises(CommandError, match="timed out"):
        Runner("localhost", cfg(TIMEOUT="0.3")).run(command("sh", "-c", f'echo $$ > {pid_file}; exec sleep 30'))
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_a_connection_started_ahead_is_the_first_sessions(fake_ssh):
    script, log = fake_ssh
    runner = Runner("tgtserver", cfg(SSH=str(script), SUDO="")).connect_ahead()
    assert runner.run_all([command("echo", "one")]) == "one\n"
    assert runner.run_all([command("echo", "two")]) == "two\n"
    assert len(log.read_text().splitlines()) == 2  # the one started ahead, then one of its own


def test_a_connection_started_ahead_and_never_used_ends_with_close(fake_ssh):
    script, log = fake_ssh
    runner = Runner("tgtserver", cfg(SSH=str(script), SUDO="")).connect_ahead()
    process = runner._ahead.process
    runner.close()
    assert process.returncode is not None and runner._ahead is None


def test_no_connection_ahead_locally_or_dry(fake_ssh):
    script, log = fake_ssh
    for runner in (Runner("localhost", cfg(SSH=str(script))), Runner("tgtserver", cfg(SSH=str(script)), dry_run=True)):
        assert runner.connect_ahead()._ahead is None
    assert not log.exists()
