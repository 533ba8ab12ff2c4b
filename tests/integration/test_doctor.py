"""`one-iscsi doctor` against the real components: the session's tgtd, the
loopback sshd (target server `tgtserver`, hosts `node1`, `node2`), real
sudo, LVM2 and open-iscsi's iscsiadm. The kernel here has no iSCSI
initiator and iscsid does not run; the doctor does not need either:
`iscsiadm --version` and the initiator name file are there.

The command is run through its own typer app (typer.testing), the global
options given as the root app gives them (Globals)."""
import json
import os
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oneiscsi import config, doctor, tgtconf
from oneiscsi.cli import doctor as doctor_cli
from oneiscsi.cli.common import Globals
from oneiscsi.run import Runner
from support.commands import quiet
from support.ports import free_port

FILE_TOOLS = ["tgtadm", "dd", "mkfs", "mkswap", "truncate", "fallocate"]


def run_doctor(*args: str, host: str = None):
    return CliRunner().invoke(doctor_cli.app, list(args), obj=Globals(host=host))


def checks_of(*args: str, host: str = None) -> tuple[int, dict]:
    """Exit status, and {(host, check): (ok, detail)} of `doctor --json ARGS`."""
    result = run_doctor("--json", *args, host=host)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    found = {(c["host"], c["check"]): (c["ok"], c["detail"]) for c in json.loads(result.stdout)}
    return result.exit_code, found


def failed(found: dict) -> dict:
    return {key: detail for key, (ok, detail) in found.items() if ok is False}


@pytest.fixture
def setup(sshd, tgtd, monkeypatch, tmp_path):
    """A file-backend target server in order, reached over ssh as tgtserver.
    CONF_DIR is one tgt's own configuration includes (/etc/tgt/targets.conf:
    conf.d/*.conf); it is never made, since the doctor changes nothing."""
    pool = tmp_path / "pool"
    pool.mkdir()
    conf_dir = Path(f"/etc/tgt/conf.d/one-iscsi-doctor-{os.getpid()}")
    for key, value in {"SSH": sshd.ssh, "PORTAL_PORT": str(tgtd.port), "BACKEND": "file", "POOL_DIR": str(pool),
                       "CONF_DIR": str(conf_dir), "TIMEOUT": "20"}.items():
        monkeypatch.setenv(f"ONE_ISCSI_{key}", value)
    yield conf_dir
    assert not conf_dir.exists() and not Path(tgtconf.include_path(str(conf_dir))).exists()


def test_a_server_in_order_over_ssh_passes(setup, tgtd):
    rc, found = checks_of(host="tgtserver")
    assert (rc, failed(found)) == (0, {})
    assert list(found) == [("tgtserver", name) for name in (
        "ssh", *(f"sudo {tool}" for tool in FILE_TOOLS), "tgtd", "portal", "pool dir", "conf dir", "tgt config",
        "tgt start TIDs", "lock dir")]
    assert found["tgtserver", "ssh"] == (True, "ssh in BatchMode works")
    assert found["tgtserver", "sudo tgtadm"] == (True, f"allows /usr/sbin/tgtadm -C {tgtd.control}")
    assert found["tgtserver", "portal"] == (True, f"listening on 127.0.0.1:{tgtd.port}")
    assert found["tgtserver", "tgt start TIDs"][0] is True  # this machine's own tgt configuration


def test_a_local_server_and_two_hosts_pass_and_print_a_table(setup, tgtd, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_HOST", "localhost")
    rc, found = checks_of("--on", "node1", "--on", "node2")
    assert (rc, failed(found)) == (0, {})
    name = next(line.split("=", 1)[1].strip() for line in Path(doctor.INITIATOR_NAME_FILE).read_text().splitlines()
                if line.startswith("InitiatorName="))
    for node in ("node1", "node2"):
        assert [check for host, check in found if host == node] == [
            "ssh", "sudo iscsiadm", "open-iscsi", "initiator name", "portal reachable"]
        assert found[node, "open-iscsi"][1].startswith("iscsiadm version ")
        assert found[node, "initiator name"] == (True, name)
        assert found[node, "portal reachable"] == (True, f"connects to localhost:{tgtd.port}")
    assert found["localhost", "sudo"] == (True, "not used: root on this machine")
    table = run_doctor("--on", "node1")
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split() == ["HOST", "CHECK", "STATUS", "DETAIL"]
    assert ["node1", "portal", "reachable", "ok", "connects", "to", f"localhost:{tgtd.port}"] in [
        line.split() for line in table.stdout.splitlines()]


def test_on_lio_a_check_of_lio_stands_for_tgts_and_says_what_is_missing(setup, monkeypatch):
    """TARGET=lio over ssh to this machine, whose kernel has no LIO: the
    LIO check fails saying what to do, and nothing of tgt is checked."""
    monkeypatch.setenv("ONE_ISCSI_TARGET", "lio")
    rc, found = checks_of(host="tgtserver")
    assert rc == 1
    assert failed(found) == {("tgtserver", "LIO"): "no /sys/kernel/config/target on tgtserver: load LIO's modules "
                                                   "(target_core_mod, iscsi_target_mod) and mount configfs"}
    assert list(found) == [("tgtserver", name) for name in (
        "ssh", *(f"sudo {tool}" for tool in FILE_TOOLS if tool != "tgtadm"), "LIO", "pool dir", "lock dir")]


def test_tgtd_not_reachable_fails_its_line_and_skips_the_portal(setup, monkeypatch):
    # tgtadm takes control ports up to 32767; the fixtures' tgtds use 1000-30000
    control = next(n for n in iter(lambda: random.randint(30001, 32767), None)
                   if not os.path.exists(f"/var/run/tgtd/socket.{n}"))
    monkeypatch.setenv("ONE_ISCSI_TGTADM", f"tgtadm -C {control}")
    rc, found = checks_of(host="tgtserver")
    assert rc == 1
    assert failed(found) == {("tgtserver", "tgtd"): (
        "tgtd is not running on tgtserver: start it (systemctl start tgt), then `one-iscsi -H tgtserver target "
        "restore`: tgtadm failed on tgtserver (exit 107): tgtadm: failed to send request hdr to tgt daemon, "
        "Transport endpoint is not connected")}
    assert found["tgtserver", "portal"] == (None, "not checked: tgtd did not pass")
    table = run_doctor(host="tgtserver")
    assert table.exit_code == 1
    rows = [line.split()[:3] for line in table.stdout.splitlines()]
    assert [row for row in rows if row[1:] in (["tgtd", "FAILED"], ["portal", "skipped"])] == [
        ["tgtserver", "tgtd", "FAILED"], ["tgtserver", "portal", "skipped"]]


@pytest.fixture
def dead_host(sshd, monkeypatch, tmp_path):
    """`deadnode`: an ssh alias of a loopback port where nothing listens."""
    config_file = tmp_path / "ssh_config"
    config_file.write_text(f"Host deadnode\n  Port {free_port()}\nHost *\n  Include {sshd.config}\n")
    monkeypatch.setenv("ONE_ISCSI_SSH", f"ssh -F {config_file}")
    return "deadnode"


def test_a_host_that_cannot_be_reached_is_one_failed_line_the_rest_skipped(setup, dead_host):
    rc, found = checks_of("--on", dead_host, host="tgtserver")
    assert rc == 1
    assert list(failed(found)) == [(dead_host, "ssh")]
    assert failed(found)[dead_host, "ssh"].startswith(
        f"cannot reach host over ssh: ssh failed on {dead_host} (exit 255)")
    skipped = {check: detail for (host, check), (ok, detail) in found.items() if host == dead_host and ok is None}
    assert skipped == {check: "not checked: ssh did not pass"
                       for check in ("sudo iscsiadm", "open-iscsi", "initiator name", "portal reachable")}
    assert all(ok for (host, _), (ok, _) in found.items() if host == "tgtserver")


def test_an_unreachable_target_server_skips_all_its_checks(setup, dead_host):
    rc, found = checks_of(host=dead_host)
    assert rc == 1 and list(failed(found)) == [(dead_host, "ssh")]
    assert len(found) > 10 and all(ok is None for (_, check), (ok, _) in found.items() if check != "ssh")


def test_a_missing_pool_directory_fails(setup, monkeypatch, tmp_path):
    monkeypatch.setenv("ONE_ISCSI_POOL_DIR", str(tmp_path / "no-pool"))
    rc, found = checks_of(host="tgtserver")
    assert (rc, failed(found)) == (1, {("tgtserver", "pool dir"): (
        f"{tmp_path}/no-pool does not exist on tgtserver: create it (mkdir -p {tmp_path}/no-pool), or set POOL_DIR")})


def test_a_real_volume_group_passes_and_a_missing_one_fails(setup, vg, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_BACKEND", "lvm")
    monkeypatch.setenv("ONE_ISCSI_VG_NAME", vg.name)
    rc, found = checks_of(host="tgtserver")
    assert (rc, failed(found)) == (0, {})
    assert found["tgtserver", "volume group"][1].startswith(f"{vg.name}: 25")  # 256 MiB less LVM's metadata
    assert found["tgtserver", "sudo lvcreate"][0] is True  # the mapping wrapper of the tests, as configured
    monkeypatch.setenv("ONE_ISCSI_VG_NAME", "vg-doctor-missing")
    rc, found = checks_of(host="tgtserver")
    assert (rc, failed(found)) == (1, {("tgtserver", "volume group"): (
        "volume group vg-doctor-missing does not exist on tgtserver: create it (vgcreate vg-doctor-missing DEVICE), "
        "or set VG_NAME: vgs failed on tgtserver (exit 5): Cannot process volume group vg-doctor-missing")})


def test_the_include_chain_of_tgts_configuration(setup, tmp_path, monkeypatch):
    """Real files on the target server: tgt's main config, the include file, CONF_DIR."""
    conf_dir = tmp_path / "conf.d" / "one-iscsi"
    conf_dir.mkdir(parents=True)
    main = tmp_path / "targets.conf"
    main.write_text(f"include {tmp_path}/conf.d/*.conf\n")
    include = Path(tgtconf.include_path(str(conf_dir)))
    monkeypatch.setenv("ONE_ISCSI_CONF_DIR", str(conf_dir))
    server = Runner("tgtserver", config.load())

    def tgt_config() -> tuple:
        [check] = [c for c in doctor.run_probes(server, doctor.server_probes(server, tgt_conf=str(main)))
                   if c.name == "tgt config"]
        return check.ok, check.detail

    assert tgt_config()[0] is False and tgt_config()[1].startswith(f"{include} is missing")
    include.write_text(tgtconf.include(str(conf_dir)))
    assert tgt_config() == (True, f"{main} includes {include}, which includes {conf_dir}/*.conf")
    include.write_text(f"include {conf_dir}/*.conf\n")  # as an older one-iscsi wrote it
    assert tgt_config()[0] is False
    main.write_text("# nothing included\n")
    assert tgt_config() == (False, f"tgt's start does not read {include}: add `include {include}` to {main}, "
                                   "or set CONF_DIR to a directory in one it includes")


@pytest.fixture
def ordinary_user(sshd, monkeypatch):
    """The target server reached as a user of its own, whose sudo rules allow tgtadm and vgs only."""
    user = f"doctor-{os.getpid()}"
    # "*": no password, but not a locked account, which sshd would refuse
    quiet(["useradd", "--no-create-home", "--shell", "/bin/sh", "--password", "*", user]).check_returncode()
    rules = Path(f"/etc/sudoers.d/{user}")
    try:
        rules.write_text(f"{user} ALL=(root) NOPASSWD: /usr/sbin/tgtadm, /usr/sbin/vgs\n")
        rules.chmod(0o440)
        monkeypatch.setenv("ONE_ISCSI_SSH", f"{sshd.ssh} -o User={user}")
        yield user
    finally:
        rules.unlink(missing_ok=True)
        quiet(["userdel", user])


def test_sudo_rules_are_read_for_the_ssh_user(setup, ordinary_user):
    rc, found = checks_of(host="tgtserver")
    assert rc == 1
    sudo = {check: ok for (_, check), (ok, _) in found.items() if check.startswith("sudo ")}
    assert sudo == {f"sudo {tool}": tool == "tgtadm" for tool in FILE_TOOLS}
    assert found["tgtserver", "sudo truncate"] == (
        False, "sudo does not allow `truncate`: add a NOPASSWD sudoers rule for it (see README)")
    assert found["tgtserver", "tgtd"][0] is True  # tgtadm really ran through sudo, without a password
