"""The doctor's checks against a recording Runner (no process is started):
the exact commands on each host, one session per host, what a failure says,
and which checks are skipped after one fails. The Runner here resolves
commands as the real one does, so sudo's prefix is the configured one."""
import json

import pytest
from typer.testing import CliRunner

from oneiscsi import doctor, tgt, tgtconf, tgtstart
from oneiscsi.cli import doctor as doctor_cli
from oneiscsi.cli.common import Globals
from oneiscsi.doctor import Check
from oneiscsi.run import Runner
from support.expected import CONF_DIR, INCLUDE, tgtadm
from support.recording import FakeRunner, Recorder, make_config

LVM_TOOLS = ["tgtadm", "lvcreate", "lvremove", "lvs", "vgs", "dd", "mkfs", "mkswap", "blkdiscard", "blockdev",
             "lvextend"]
FILE_TOOLS = ["tgtadm", "dd", "mkfs", "mkswap", "truncate", "fallocate"]
SYS = "System:\n    State: ready\n    debug: off\nLLDs:\n    iscsi: ready\n"
PORTALS = "Portal: 127.0.0.1:3260,1\n"
INCLUDE_TEXT = f"ignore-errors yes\ninclude {CONF_DIR}/*.conf\n"
TGT_CONF_TEXT = "# tgt\ninclude /etc/tgt/conf.d/*.conf\n"
IQN = "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-7"
SAVED = f"<target {IQN}>\n    controller_tid 3\n    backing-store /dev/vg-one/lv-one-7\n</target>\n"
CONNECT = ["timeout", "5", "bash", "-c", doctor.CONNECT, "portal-check", "tgt1", "3260"]
NOT_RAN = "not checked: ssh did not pass"


class ResolvingRunner(FakeRunner):
    """Records like FakeRunner; resolves commands (SUDO, tool command lines) as the real Runner."""
    resolve = Runner.resolve


def sudo_l(*argv: str) -> list[str]:
    return ["sudo", "-n", "-l", *argv]


def stat(path: str) -> list[str]:
    return ["stat", "-c", "%F", "--", path]


def missing(path: str) -> str:
    return f"stat: cannot statx '{path}': No such file or directory"


def make(backend: str = "lvm", dry_run: bool = False, **keys: str) -> Recorder:
    """A target server tgt1 where everything is in order, as its commands answer."""
    keys = {"HOST": "tgt1", "BACKEND": backend, "POOL_DIR": "/srv/pool", "CONF_DIR": CONF_DIR, **keys}
    recorder = Recorder(make_config(**keys), dry_run=dry_run)
    recorder.answer("sudo", "-n", "-l", out="/usr/sbin/tool\n")
    recorder.answer(*tgtadm("--op", "show", "--mode", "sys"), out=SYS)
    recorder.answer(*tgtadm("--op", "show", "--mode", "portal"), out=PORTALS)
    recorder.answer("vgs", "--noheadings", out=f"  {10240 * 2 ** 20}:{4096 * 2 ** 20}\n")
    recorder.answer("findmnt", out="rw,relatime\n")
    recorder.answer("cat", "--", doctor.TGT_CONF, out=TGT_CONF_TEXT)
    recorder.answer("cat", "--", INCLUDE, out=INCLUDE_TEXT)
    recorder.answer("find", "/etc/tgt/conf.d", out=f"{INCLUDE}\0/etc/tgt/conf.d/.one-iscsi.conf.tmp\0")
    recorder.answer(*tgtconf.list_files(CONF_DIR).argv, out=f"{len(SAVED)} {IQN}.conf\n")
    recorder.answer("cat", "--", f"{CONF_DIR}/{IQN}.conf", out=SAVED)
    recorder.answer("stat", out="directory\n")
    recorder.fail("stat", "/run/lock/one-iscsi.lock", stderr=missing("/run/lock/one-iscsi.lock"))
    recorder.answer("iscsiadm", "--version", out="iscsiadm version 2.1.8\n")
    recorder.answer("cat", "--", doctor.INITIATOR_NAME_FILE,
                    out="## DO NOT EDIT\nInitiatorName=iqn.1993-08.org.debian:01:node1\n")
    return recorder


def runner(recorder: Recorder, host: str) -> ResolvingRunner:
    return ResolvingRunner(recorder, host)


def server_checks(recorder: Recorder) -> list[Check]:
    return doctor.run_probes(runner(recorder, "tgt1"), doctor.server_probes(runner(recorder, "tgt1")))


def host_checks(recorder: Recorder, host: str = "node1") -> list[Check]:
    return doctor.run_probes(runner(recorder, host), doctor.host_probes(runner(recorder, host), "tgt1"))


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def common_tail() -> list[list[str]]:
    """CONF_DIR, tgt's config and the lock directory, all in order."""
    return [stat(CONF_DIR), ["cat", "--", doctor.TGT_CONF], ["cat", "--", INCLUDE],
            ["cat", "--", doctor.TGT_CONF], [*tgtstart.find_included("/etc/tgt/conf.d/*.conf").argv],
            ["cat", "--", INCLUDE], [*tgtconf.list_files(CONF_DIR).argv], ["cat", "--", f"{CONF_DIR}/{IQN}.conf"],
            stat("/run/lock"), ["test", "-w", "/run/lock"], stat("/run/lock/one-iscsi.lock")]


def test_an_lvm_server_in_order_passes_every_check_in_one_session():
    recorder = make()
    checks = server_checks(recorder)
    assert [(c.name, c.ok) for c in checks] == [
        ("ssh", True), *((f"sudo {tool}", True) for tool in LVM_TOOLS), ("tgtd", True), ("portal", True),
        ("volume group", True), ("conf dir", True), ("tgt config", True), ("tgt start TIDs", True), ("lock dir", True)]
    assert recorder.argvs("tgt1") == [
        ["true"], *(sudo_l(tool) for tool in LVM_TOOLS), tgtadm("--op", "show", "--mode", "sys"),
        tgtadm("--op", "show", "--mode", "portal"),
        ["vgs", "--noheadings", "--units", "b", "--nosuffix", "--separator", ":", "-o", "vg_size,vg_free", "vg-one"],
        *common_tail()]
    assert recorder.sessions == [("tgt1", False)]
    details = by_name(checks)
    assert details["volume group"].detail == "vg-one: 10240 MiB, 4096 MiB free"
    assert details["portal"].detail == "listening on 127.0.0.1:3260"
    assert details["tgtd"].detail == "running, ready"
    assert details["tgt config"].detail == (f"/etc/tgt/targets.conf includes {INCLUDE}, which includes "
                                            f"{CONF_DIR}/*.conf")
    assert details["tgt start TIDs"].detail == "every target of tgt's configuration records a TID of its own (1 target)"


def test_a_file_server_checks_its_own_tools_and_the_pool_directory():
    recorder = make("file")
    checks = server_checks(recorder)
    assert [c.name for c in checks if c.name.startswith("sudo")] == [f"sudo {tool}" for tool in FILE_TOOLS]
    assert all(c.ok for c in checks)
    assert recorder.argvs("tgt1") == [
        ["true"], *(sudo_l(tool) for tool in FILE_TOOLS), tgtadm("--op", "show", "--mode", "sys"),
        tgtadm("--op", "show", "--mode", "portal"), stat("/srv/pool"),
        ["findmnt", "-n", "-o", "OPTIONS", "-T", "/srv/pool"], *common_tail()]
    assert by_name(checks)["pool dir"].detail == "/srv/pool exists and is writable"


def test_sudo_is_checked_with_the_configured_prefix_and_command_lines():
    recorder = make(SUDO="sudo -u root --", TGTADM="tgtadm -C 7")
    server_checks(recorder)
    assert recorder.argvs()[1] == ["sudo", "-n", "-l", "-u", "root", "--", "tgtadm", "-C", "7"]


def test_an_unreachable_host_is_one_failed_line_and_nothing_else_runs():
    recorder = make()
    recorder.fail("true", rc=255, stderr="ssh: connect to host tgt1 port 22: Connection refused")
    checks = server_checks(recorder)
    assert recorder.argvs() == [["true"]]
    assert [c.ok for c in checks] == [False] + [None] * (len(checks) - 1)
    assert checks[0].detail.startswith("true failed on tgt1 (exit 255): ssh: connect to host tgt1 port 22: "
                                       "Connection refused; `ssh tgt1 true` must work as this user")
    assert {c.detail for c in checks[1:]} == {NOT_RAN}


def test_tgtd_not_running_fails_its_line_skips_the_portal_and_checks_the_rest():
    recorder = make()
    recorder.fail(*tgtadm("--op", "show", "--mode", "sys"), rc=107,
                  stderr="tgtadm: failed to send request hdr to tgt daemon, Transport endpoint is not connected")
    checks = by_name(server_checks(recorder))
    assert checks["tgtd"].ok is False
    assert checks["tgtd"].detail == ("tgtd is not running on tgt1: start it (systemctl start tgt), then `one-iscsi "
                                     "-H tgt1 target restore`: tgtadm failed on tgt1 (exit 107): tgtadm: failed to "
                                     "send request hdr to tgt daemon, Transport endpoint is not connected")
    assert (checks["portal"].ok, checks["portal"].detail) == (None, "not checked: tgtd did not pass")
    assert tgtadm("--op", "show", "--mode", "portal") not in recorder.argvs()
    assert checks["volume group"].ok and checks["lock dir"].ok


def test_a_portal_on_another_port_says_which():
    recorder = make(PORTAL_PORT="3261")
    recorder.answer(*tgtadm("--op", "show", "--mode", "portal"), out="Portal: [::]:3260,1\nPortal: 0.0.0.0:3260,1\n")
    check = by_name(server_checks(recorder))["portal"]
    assert (check.ok, check.detail) == (False, "tgtd listens on [::]:3260, 0.0.0.0:3260, not on port 3261 "
                                               "(PORTAL_PORT): set PORTAL_PORT to its port, or start tgtd with "
                                               "--iscsi portal=ADDRESS:3261")


@pytest.mark.parametrize("stderr, rc, detail", [
    ("sudo: a password is required", 1,
     "sudo asks for a password: add a NOPASSWD sudoers rule for lvextend (see README)"),
    ("", 1, "sudo does not allow `lvextend`: add a NOPASSWD sudoers rule for it (see README)"),
    ("sudo: lvextend: command not found", 1,
     "lvextend is not installed on tgt1 (not in sudo's secure_path): install lvm2, or set LVEXTEND"),
    ("sh: 1: sudo: not found", 127,
     "sudo failed on tgt1 (exit 127): sh: 1: sudo: not found: install sudo, or set SUDO"),
])
def test_sudo_refusals_say_what_to_do(stderr, rc, detail):
    recorder = make()
    recorder.fail(*sudo_l("lvextend"), rc=rc, stderr=stderr)
    checks = server_checks(recorder)
    assert [(c.name, c.detail) for c in checks if c.ok is False] == [("sudo lvextend", detail)]


def test_a_tool_sudo_refuses_skips_the_check_that_runs_it():
    recorder = make()
    recorder.fail(*sudo_l("vgs"), rc=1, stderr="")
    checks = by_name(server_checks(recorder))
    assert (checks["volume group"].ok, checks["volume group"].detail) == (None, "not checked: sudo vgs did not pass")
    assert not any(argv[0] == "vgs" for argv in recorder.argvs())


def test_without_sudo_there_is_one_line_saying_so():
    recorder = make(SUDO="")
    checks = server_checks(recorder)
    assert [(c.name, c.ok, c.detail) for c in checks if c.name.startswith("sudo")] == [
        ("sudo", True, "not used: SUDO is empty")]
    assert not any(argv[0] == "sudo" for argv in recorder.argvs())


def test_a_sudo_that_is_not_sudo_is_not_checked():
    checks = server_checks(make(SUDO="doas"))
    assert [(c.name, c.ok, c.detail) for c in checks if c.name.startswith("sudo")] == [
        ("sudo", None, "SUDO is doas: only sudo's rules can be checked")]


def test_a_missing_volume_group_says_how_to_make_it():
    recorder = make()
    recorder.fail("vgs", "--noheadings", rc=5,
                  stderr='  Volume group "vg-one" not found\n  Cannot process volume group vg-one')
    check = by_name(server_checks(recorder))["volume group"]
    assert (check.ok, check.detail) == (False, "volume group vg-one does not exist on tgt1: create it "
                                               "(vgcreate vg-one DEVICE), or set VG_NAME: vgs failed on tgt1 "
                                               "(exit 5): Cannot process volume group vg-one")


def test_a_missing_pool_directory_fails():
    recorder = make("file")
    recorder.fail("stat", "/srv/pool", stderr=missing("/srv/pool"))
    check = by_name(server_checks(recorder))["pool dir"]
    assert (check.ok, check.detail) == (False, "/srv/pool does not exist on tgt1: create it (mkdir -p /srv/pool), "
                                               "or set POOL_DIR")


def test_a_pool_that_is_a_file_fails():
    recorder = make("file")
    recorder.answer("stat", "/srv/pool", out="regular file\n")
    check = by_name(server_checks(recorder))["pool dir"]
    assert (check.ok, check.detail) == (False, "/srv/pool on tgt1 is a regular file, not a directory: set POOL_DIR")


def test_a_read_only_pool_directory_fails():
    recorder = make("file")
    recorder.answer("findmnt", out="ro,relatime\n")
    assert "read-only filesystem" in by_name(server_checks(recorder))["pool dir"].detail


def test_without_sudo_the_pool_directory_must_be_writable_by_the_user():
    recorder = make("file", SUDO="")
    recorder.fail("test", "-w", "/srv/pool", stderr="")
    check = by_name(server_checks(recorder))["pool dir"]
    assert check.ok is False and "not writable by the user one-iscsi runs as" in check.detail
    assert not any(argv[0] == "findmnt" for argv in recorder.argvs())


def test_a_fresh_server_without_conf_dir_and_include_file_passes():
    recorder = make()
    recorder.fail("stat", CONF_DIR, stderr=missing(CONF_DIR))
    recorder.fail("cat", "--", INCLUDE, stderr=f"cat: {INCLUDE}: No such file or directory")
    checks = by_name(server_checks(recorder))
    assert (checks["conf dir"].ok, checks["tgt config"].ok) == (True, True)
    assert "not made yet" in checks["conf dir"].detail
    assert "which the first target one-iscsi makes writes" in checks["tgt config"].detail


def test_conf_dir_that_is_not_a_directory_fails():
    recorder = make()
    recorder.answer("stat", CONF_DIR, out="regular file\n")
    check = by_name(server_checks(recorder))["conf dir"]
    assert (check.ok, check.detail) == (False, f"{CONF_DIR} on tgt1 is a regular file, not a directory: move it "
                                               "away, or set CONF_DIR")


def test_saved_targets_without_the_include_file_fail():
    recorder = make()
    recorder.fail("cat", "--", INCLUDE, stderr=f"cat: {INCLUDE}: No such file or directory")
    check = by_name(server_checks(recorder))["tgt config"]
    assert check.ok is False and check.detail.startswith(f"{INCLUDE} is missing: tgt's start does not bring back")


def test_an_include_file_of_an_older_version_fails():
    recorder = make()
    recorder.answer("cat", "--", INCLUDE, out=f"include {CONF_DIR}/*.conf\n")
    check = by_name(server_checks(recorder))["tgt config"]
    assert check.ok is False and "delete it; the next target one-iscsi makes writes it" in check.detail


def test_a_conf_dir_tgt_does_not_read_fails():
    recorder = make(CONF_DIR="/srv/tgt/one-iscsi")
    check = by_name(server_checks(recorder))["tgt config"]
    assert (check.ok, check.detail) == (False, "tgt's start does not read /srv/tgt/one-iscsi.conf: add `include "
                                               "/srv/tgt/one-iscsi.conf` to /etc/tgt/targets.conf, or set CONF_DIR "
                                               "to a directory in one it includes")


FOREIGN_FILE = "/etc/tgt/conf.d/storage.conf"


def with_foreign(recorder: Recorder, text: str) -> None:
    """A file of the admin's own targets in tgt's conf.d, beside one-iscsi's include file."""
    recorder.answer("find", "/etc/tgt/conf.d", out=f"{INCLUDE}\0{FOREIGN_FILE}\0")
    recorder.answer("cat", "--", FOREIGN_FILE, out=text)


def test_a_target_of_tgts_configuration_without_tid_fails_naming_it_and_the_clash():
    recorder = make()
    with_foreign(recorder, "<target iqn.2099-01.org.example:data>\n  backing-store /dev/sdb\n</target>\n")
    check = by_name(server_checks(recorder))["tgt start TIDs"]
    assert (check.ok, check.detail) == (False, (
        f"iqn.2099-01.org.example:data ({FOREIGN_FILE}) records no TID: tgt's start numbers such targets after "
        "the one before them and may give one a TID another records; give each a controller_tid of its own and "
        "set BASE_TID above their TIDs"))
    assert ["cat", "--", FOREIGN_FILE] in recorder.argvs()


def test_a_target_of_tgts_configuration_with_a_tid_below_base_tid_passes():
    recorder = make(BASE_TID="100")
    with_foreign(recorder, "<target iqn.2099-01.org.example:data>\n  controller_tid 2\n</target>\n")
    check = by_name(server_checks(recorder))["tgt start TIDs"]
    assert (check.ok, check.detail) == (True, "every target of tgt's configuration records a TID of its own "
                                              "(2 targets)")


def test_conf_dir_included_as_a_directory_is_read_through_sudo_as_one_iscsi_reads_it():
    recorder = make()
    recorder.answer("cat", "--", doctor.TGT_CONF, out=f"{TGT_CONF_TEXT}include {CONF_DIR}/\n")
    check = by_name(server_checks(recorder))["tgt start TIDs"]
    assert (check.ok, check.detail) == (True, "every target of tgt's configuration records a TID of its own "
                                              "(1 target)")
    assert [*tgtstart.find_included(f"{CONF_DIR}/").argv] not in recorder.argvs()  # 0700: only sudo sees in


def test_a_tgt_configuration_without_targets_passes():
    recorder = make()
    recorder.answer("cat", "--", doctor.TGT_CONF, out="include /etc/tgt/conf.d/*.conf\n")
    recorder.answer(*tgtconf.list_files(CONF_DIR).argv, out="")
    assert by_name(server_checks(recorder))["tgt start TIDs"].detail == "tgt's configuration has no target"


def test_a_file_of_tgts_configuration_only_root_reads_is_not_checked():
    recorder = make()
    recorder.answer("find", "/etc/tgt/conf.d", out=f"{INCLUDE}\0{FOREIGN_FILE}\0")
    recorder.fail("cat", "--", FOREIGN_FILE, stderr=f"cat: {FOREIGN_FILE}: Permission denied")
    check = by_name(server_checks(recorder))["tgt start TIDs"]
    assert (check.ok, check.detail) == (None, "not checked: what tgt's start reads is out of reach of the user "
                                              f"one-iscsi runs as: {FOREIGN_FILE} (Permission denied)")


def test_an_include_directory_the_user_may_not_list_is_not_checked_and_a_missing_file_is_a_problem():
    recorder = make()
    recorder.fail("find", "-L", "/etc/tgt/conf.d", stderr="find: '/etc/tgt/conf.d': Permission denied")
    check = by_name(server_checks(recorder))["tgt start TIDs"]
    assert (check.ok, check.detail) == (None, "not checked: what tgt's start reads is out of reach of the user "
                                              "one-iscsi runs as: /etc/tgt/conf.d/*.conf (Permission denied)")
    recorder = make()
    recorder.answer("cat", "--", doctor.TGT_CONF, out=f"{TGT_CONF_TEXT}include /etc/tgt/gone.conf\n")
    recorder.fail("find", "-L", "/etc/tgt/gone.conf", stderr="find: '/etc/tgt/gone.conf': No such file or directory")
    check = by_name(server_checks(recorder))["tgt start TIDs"]
    assert (check.ok, check.detail) == (False, f"{doctor.TGT_CONF} includes /etc/tgt/gone.conf, which does not "
                                               "exist: tgt-admin stops there and tgt's start makes no target")
    recorder.answer("cat", "--", doctor.TGT_CONF, out=f"{TGT_CONF_TEXT}IncludeOptional /etc/tgt/gone.conf\n")
    assert by_name(server_checks(recorder))["tgt start TIDs"].ok is True  # optional: tgt-admin passes over it


@pytest.mark.parametrize("config, found", [
    ("include /etc/tgt/conf.d/*.conf", True),
    ("include /etc/tgt/conf.d/", True),
    ("include /etc/tgt/conf.d/one-iscsi.conf", True),
    ("# include /etc/tgt/conf.d/*.conf", False),
    ("include /etc/tgt/*.conf", False),  # a glob's * does not cross directories
    ("include /etc/tgt/conf.d/*.cfg", False),
])
def test_includes(config, found):
    assert doctor.includes(config + "\n", INCLUDE) is found


def test_an_unwritable_lock_directory_fails():
    recorder = make()
    recorder.fail("test", "-w", "/run/lock", stderr="")
    check = by_name(server_checks(recorder))["lock dir"]
    assert check.ok is False and check.detail.startswith("/run/lock on tgt1 is not writable by the ssh user")


def test_a_lock_directory_out_of_the_users_reach_fails():
    recorder = make()
    recorder.fail("stat", "/run/lock", stderr="stat: cannot statx '/run/lock': Permission denied")
    check = by_name(server_checks(recorder))["lock dir"]
    assert (check.ok, check.detail) == (False, "/run/lock on tgt1 is out of reach of the ssh user (Permission "
                                               "denied): make it reachable, or set LOCK_FILE")


def test_a_conf_dir_only_root_sees_is_not_checked():
    """one-iscsi reaches CONF_DIR through sudo; the doctor looks as the ssh user."""
    recorder = make()
    recorder.fail("stat", CONF_DIR, stderr=f"stat: cannot statx '{CONF_DIR}': Permission denied")
    check = by_name(server_checks(recorder))["conf dir"]
    assert (check.ok, check.detail) == (None, f"{CONF_DIR} is out of reach of the user one-iscsi runs as "
                                              "(Permission denied): not checked")


def test_a_lock_file_of_someone_else_fails():
    recorder = make()
    recorder.answer("stat", "/run/lock/one-iscsi.lock", out="regular file\n")
    recorder.fail("test", "-w", "/run/lock/one-iscsi.lock", stderr="")
    check = by_name(server_checks(recorder))["lock dir"]
    assert (check.ok, check.detail) == (False, "/run/lock/one-iscsi.lock on tgt1 is not writable by the ssh user: "
                                               "remove it, or set LOCK_FILE")


def test_a_host_in_order_passes_in_one_session():
    recorder = make()
    checks = host_checks(recorder)
    assert [(c.name, c.ok, c.detail) for c in checks] == [
        ("ssh", True, "ssh in BatchMode works"), ("sudo iscsiadm", True, "allows /usr/sbin/tool"),
        ("open-iscsi", True, "iscsiadm version 2.1.8"),
        ("initiator name", True, "iqn.1993-08.org.debian:01:node1"),
        ("portal reachable", True, "connects to tgt1:3260")]
    assert recorder.argvs("node1") == [["true"], sudo_l("iscsiadm"), ["iscsiadm", "--version"],
                                       ["cat", "--", doctor.INITIATOR_NAME_FILE], CONNECT]
    assert recorder.sessions == [("node1", False)]


def test_a_host_without_iscsiadm_rights_skips_the_iscsiadm_check():
    recorder = make()
    recorder.fail(*sudo_l("iscsiadm"), stderr="sudo: iscsiadm: command not found")
    checks = by_name(host_checks(recorder))
    assert checks["sudo iscsiadm"].detail == ("iscsiadm is not installed on node1 (not in sudo's secure_path): "
                                              "install open-iscsi, or set ISCSIADM")
    assert checks["open-iscsi"].ok is None and checks["portal reachable"].ok is True


@pytest.mark.parametrize("text, ok, detail", [
    ("GenerateName=yes\n", True, "made when iscsid first starts (GenerateName=yes)"),
    ("# InitiatorName=iqn.x\n", False, "/etc/iscsi/initiatorname.iscsi on node1 has no InitiatorName: add "
                                       "`InitiatorName=<IQN>` (iscsi-iname makes one), then restart iscsid"),
])
def test_initiator_name_file_contents(text, ok, detail):
    recorder = make()
    recorder.answer("cat", "--", doctor.INITIATOR_NAME_FILE, out=text)
    check = by_name(host_checks(recorder))["initiator name"]
    assert (check.ok, check.detail) == (ok, detail)


def test_an_initiator_name_file_only_root_reads_is_checked_for_size():
    recorder = make()
    recorder.fail("cat", "--", doctor.INITIATOR_NAME_FILE,
                  stderr=f"cat: {doctor.INITIATOR_NAME_FILE}: Permission denied")
    check = by_name(host_checks(recorder))["initiator name"]
    assert (check.ok, check.detail) == (True, f"{doctor.INITIATOR_NAME_FILE} is there (readable by root only: "
                                              "name not read)")
    assert recorder.argvs()[-2] == ["test", "-s", doctor.INITIATOR_NAME_FILE]


def test_no_initiator_name_file():
    recorder = make()
    recorder.fail("cat", "--", doctor.INITIATOR_NAME_FILE,
                  stderr=f"cat: {doctor.INITIATOR_NAME_FILE}: No such file or directory")
    check = by_name(host_checks(recorder))["initiator name"]
    assert (check.ok, check.detail) == (False, f"no {doctor.INITIATOR_NAME_FILE} on node1: install open-iscsi")


@pytest.mark.parametrize("rc, stderr, detail", [
    (124, "", "no answer from tgt1:3260 within 5 s: open TCP port 3260 of the target server to node1 "
              "(a firewall drops it?)"),
    (1, "bash: connect: Connection refused\nbash: line 1: /dev/tcp/tgt1/3260: Connection refused",
     "tgt1:3260 refuses connections: is tgtd's portal on that address and PORTAL_PORT?"),
    (1, "bash: tgt1: Name or service not known\nbash: line 1: /dev/tcp/tgt1/3260: Invalid argument",
     "node1 cannot resolve tgt1 (HOST, the host part of every IQN): add it to the host's DNS or /etc/hosts"),
    (1, "bash: tgt1: Temporary failure in name resolution",
     "node1 cannot resolve tgt1 (HOST, the host part of every IQN): add it to the host's DNS or /etc/hosts"),
    (1, "bash: connect: Network is unreachable", "cannot connect to tgt1:3260: bash: connect: Network is unreachable"),
])
def test_portal_connection_failures(rc, stderr, detail):
    recorder = make()
    recorder.fail(*CONNECT, rc=rc, stderr=stderr)
    check = by_name(host_checks(recorder))["portal reachable"]
    assert (check.ok, check.detail) == (False, detail)


@pytest.mark.parametrize("backend", ["lvm", "file"])
def test_checks_run_under_dry_run_as_they_only_read(backend):
    dry, wet = make(backend, dry_run=True), make(backend)
    checks = doctor.examine(runner(dry, "tgt1"), [runner(dry, "node1")])
    assert checks == doctor.examine(runner(wet, "tgt1"), [runner(wet, "node1")])
    assert all(check.ok for check in checks)
    assert dry.calls == wet.calls


def test_examine_checks_the_server_then_each_host_against_the_servers_portal():
    recorder = make()
    checks = doctor.examine(runner(recorder, "tgt1"), [runner(recorder, "node1"), runner(recorder, "node2")])
    assert [host for host in dict.fromkeys(check.host for check in checks)] == ["tgt1", "node1", "node2"]
    assert recorder.sessions == [("tgt1", False), ("node1", False), ("node2", False)]
    assert [argv for host, argv in recorder.calls if argv[0] == "timeout"] == [CONNECT, CONNECT]


def test_parse_portals():
    assert tgt.parse_portals("Portal: 127.0.0.1:3261,1\nPortal: [::]:3260,1\nnoise\n") == [
        ("127.0.0.1", 3261), ("[::]", 3260)]


def test_tgtd_queries_argv():
    assert list(tgt.show_system().argv) == tgtadm("--op", "show", "--mode", "sys")
    assert tgt.show_portals().query and tgt.show_system().query


RESULTS = [Check("tgt1", "ssh", True, "ssh in BatchMode works"),
           Check("tgt1", "tgtd", False, "tgtd is not running on tgt1"),
           Check("tgt1", "portal", None, "not checked: tgtd did not pass")]


@pytest.fixture
def examined(monkeypatch):
    """doctor.examine answering RESULTS; records the hosts it was given."""
    given = []

    def examine(server, hosts):
        given.append((server.host, [host.host for host in hosts]))
        return RESULTS

    monkeypatch.setattr(doctor, "examine", examine)
    return given


def test_the_command_prints_a_table_and_exits_1_on_a_failure(examined):
    result = CliRunner().invoke(doctor_cli.app, ["--on", "node1", "--on", "node2", "--on", "node1"],
                                obj=Globals(host="tgt1"))
    assert result.exit_code == 1
    assert examined == [("tgt1", ["node1", "node2"])]
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["HOST", "CHECK", "STATUS", "DETAIL"]
    assert [line.split()[:3] for line in lines[2:]] == [["tgt1", "ssh", "ok"], ["tgt1", "tgtd", "FAILED"],
                                                        ["tgt1", "portal", "skipped"]]


def test_the_command_prints_json(examined):
    result = CliRunner().invoke(doctor_cli.app, ["--json"], obj=Globals(host="tgt1"))
    assert json.loads(result.stdout) == [
        {"host": "tgt1", "check": "ssh", "ok": True, "detail": "ssh in BatchMode works"},
        {"host": "tgt1", "check": "tgtd", "ok": False, "detail": "tgtd is not running on tgt1"},
        {"host": "tgt1", "check": "portal", "ok": None, "detail": "not checked: tgtd did not pass"}]
    assert result.exit_code == 1


def test_the_command_exits_0_when_nothing_failed(monkeypatch):
    monkeypatch.setattr(doctor, "examine", lambda server, hosts: [RESULTS[0], RESULTS[2]])
    assert CliRunner().invoke(doctor_cli.app, [], obj=Globals(host="tgt1")).exit_code == 0
