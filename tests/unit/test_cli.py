import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.driver import action_xml, encode, error_block

from oneiscsi import __version__
from oneiscsi.units import MIB

IQN = "iqn.2012-02.org.opennebula:iscsitarget.vg-one.lv-one-7"


def test_version(cli):
    assert cli("--version").out == f"one-iscsi {__version__}\n"


@pytest.mark.parametrize("path", [
    [], ["target"], ["target", "new"], ["target", "bind-all"], ["target", "delete"], ["target", "tid"],
    ["target", "list"], ["target", "show"], ["target", "acl"], ["target", "acl", "add"],
    ["target", "acl", "remove"], ["target", "acl", "list"], ["target", "chap"], ["target", "chap", "set"],
    ["target", "chap", "unset"], ["lun"], ["lun", "bind"], ["lun", "unbind"], ["lun", "list"], ["host"],
    ["host", "discover"],
    ["host", "login"], ["host", "logout"], ["host", "is-iscsi"], ["iqn"], ["iqn", "parse"], ["config"], ["config", "show"], ["doctor"], ["status"], ["gc"],
    ["iqn", "lv-name"], ["iqn", "vg-name"], ["iqn", "host"], ["iqn", "build"],
])
def test_help_on_every_level_is_plain_text(cli, path):
    result = cli(*path, "--help")
    assert result.rc == 0
    assert result.out.startswith(f"Usage: one-iscsi {' '.join(path)}".rstrip())
    assert "\x1b" not in result.out and "─" not in result.out


def test_iqn_parse_text_and_json(cli):
    text = cli("iqn", "parse", IQN)
    assert text.out.splitlines()[2].split() == ["host", "iscsitarget"]
    assert json.loads(cli("iqn", "parse", "--json", IQN).out) == {
        "iqn": IQN, "base": "iqn.2012-02.org.opennebula", "host": "iscsitarget",
        "vg": "vg-one", "lv": "lv-one-7", "device": "/dev/vg-one/lv-one-7"}


def test_iqn_getters_print_one_value_as_the_original(cli):
    assert cli("iqn", "lv-name", IQN).out == "lv-one-7\n"
    assert cli("iqn", "vg-name", IQN).out == "vg-one\n"
    assert cli("iqn", "host", IQN).out == "iscsitarget\n"


def test_iqn_build_uses_configuration_and_options(cli, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_HOST", "tgt.example.com")
    assert cli("iqn", "build", "--lv", "lv-one-9").out == "iqn.2012-02.org.opennebula:tgt.example.com.vg-one.lv-one-9\n"
    assert cli("iqn", "build", "--lv", "lv-one-9", "-H", "t2", "--vg", "vg2",
               "--base-iqn", "iqn.2020-01.com.example").out == "iqn.2020-01.com.example:t2.vg2.lv-one-9\n"


def test_iqn_build_refuses_with_reason(cli):
    result = cli("iqn", "build", "--lv", "lv-one-9", "--vg", "vg_images")
    assert result.rc == 2
    assert result.err == ("one-iscsi: error: VG_NAME cannot be part of a target name (letters, digits and '-' "
                          "only, not starting with '-'), got 'vg_images' (from the command line)\n")


def test_module_and_console_script_entry_points():
    module = subprocess.run([sys.executable, "-m", "oneiscsi", "iqn", "lv-name", IQN],
                            capture_output=True, text=True, timeout=30)
    assert (module.returncode, module.stdout) == (0, "lv-one-7\n")
    script = subprocess.run([str(Path(sys.executable).with_name("one-iscsi")), "iqn", "vg-name", "bad"],
                            capture_output=True, text=True, timeout=30)
    assert script.returncode == 2
    assert script.stderr == "one-iscsi: error: IQN 'bad' is not of the form iqn.YYYY-MM.reverse.domain[:name]\n"


@pytest.mark.parametrize("args, group", [
    (["iqn", "parse", "x"], "iqn"),
    (["--config", "target", "tm", "ln"], "tm"),      # the value of --config is not the group
    (["-c", "f", "--dry-run", "target", "list"], "target"),
    (["--config=f", "image", "cp"], "image"),
    (["install"], None), (["--help"], None), ([], None), (["nonsense"], None),
])
def test_a_run_builds_only_the_group_it_names(args, group):
    from oneiscsi.cli import _group_named, build_app

    assert _group_named(args) == group
    built = {info.name for info in build_app(args).registered_groups}
    assert built == ({group} if group else {"target", "lun", "host", "iqn", "image", "tm", "config"})


@pytest.mark.parametrize("args, hoisted", [
    (["target", "list", "-H", "tgt1"], ["-H", "tgt1", "target", "list"]),
    (["target", "delete", "5", "-n"], ["-n", "target", "delete", "5"]),
    (["-H", "tgt1", "target", "list", "--json"], ["-H", "tgt1", "target", "list", "--json"]),
    (["lun", "bind", "3", "/dev/x", "--quiet", "--config=/e/i.conf", "-Htgt2", "-l", "2"],
     ["--quiet", "--config=/e/i.conf", "-Htgt2", "lun", "bind", "3", "/dev/x", "-l", "2"]),
    (["tm", "cpds", "n1:/d/disk.0", "IQN", "-1", "7", "0"], ["tm", "cpds", "n1:/d/disk.0", "IQN", "-1", "7", "0"]),
    (["iqn", "parse", "--", "-n", "-H"], ["iqn", "parse", "--", "-n", "-H"]),
    (["target", "list", "--host"], ["--host", "target", "list"]),
])
def test_global_options_are_taken_wherever_they_are(args, hoisted):
    from oneiscsi.cli import hoist_global_options

    assert hoist_global_options(args) == hoisted


@pytest.mark.parametrize("where", ["before", "after"])
def test_host_and_dry_run_work_before_the_group_and_after_the_command(cli, where):
    options = ["-H", "tgt9.example.com", "-n", "--base-iqn", "iqn.2020-01.com.example"]
    args = [*options[:3], "iqn", "build", "--lv", "lv-one-1", *options[3:]] if where == "before" else \
        ["iqn", "build", "--lv", "lv-one-1", *options]
    assert cli(*args).out == "iqn.2020-01.com.example:tgt9.example.com.vg-one.lv-one-1\n"


def test_a_bare_command_prints_its_help_as_it_is(cli):
    for args in ([], ["target"]):
        result = cli(*args)
        assert result.rc == 2 and result.out == ""
        assert result.err.startswith(f"Usage: one-iscsi {' '.join(args)}".rstrip() + " [OPTIONS] COMMAND")
        assert len(result.err.splitlines()) > 5


def test_unknown_group_is_a_usage_error(cli):
    result = cli("nonsense")
    assert result.rc == 2 and "No such command 'nonsense'" in result.err


# the driver actions OpenNebula calls

def test_the_driver_actions_print_the_error_message_block():
    from oneiscsi.cli import DRIVER_ACTIONS

    assert DRIVER_ACTIONS == {
        "image": ("cp", "mkfs", "clone", "rm", "stat", "monitor", "unsupported"),
        "tm": ("ln", "clone", "mvds", "cpds", "mv", "delete", "resize", "premigrate", "postmigrate", "failmigrate",
               "unsupported")}


@pytest.mark.parametrize("group, action, kind", [("image", "snap_delete", "datastore"),
                                                 ("image", "export", "datastore"),
                                                 ("tm", "snap_create", "transfer"),
                                                 ("tm", "prebackup_live", "transfer")])
def test_an_unsupported_action_fails_cleanly_with_the_block(cli, group, action, kind):
    # as the remotes call it: `<group> unsupported -- <action> "$@"`
    result = cli(group, "unsupported", "--", action, "node1:/var/lib/one/datastores/0/9/disk.0", "0", "9")
    assert result.rc == 1
    assert error_block(result.err) == f"{action} is not supported by the iscsi driver ({kind} action)"
    assert result.err.startswith(f"ERROR: unsupported: {action} is not supported")
    assert result.out == ""


@pytest.fixture
def stdin(monkeypatch):
    """What OpenNebula writes to the action's stdin."""
    def given(text: str, terminal: bool = False):
        stream = io.StringIO(text)
        stream.isatty = lambda: terminal
        monkeypatch.setattr(sys, "stdin", stream)
    return given


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "image.img"
    path.write_bytes(b"\x01" * (2 * MIB + 1))
    return str(path)


def test_an_image_action_takes_its_xml_as_argument_or_on_stdin(cli, stdin, image_file):
    data = action_xml({"PATH": image_file})
    result = cli("image", "stat", data, "7")
    assert (result.rc, result.out) == (0, "3\n")
    stdin(data + "\n")
    result = cli("image", "stat", "7")
    assert (result.rc, result.out) == (0, "3\n")


def test_an_image_action_with_its_id_alone_and_a_terminal_is_refused(cli, stdin):
    stdin("", terminal=True)
    result = cli("image", "stat", "7")
    assert result.rc == 2
    assert error_block(result.err) == "no DS_DRIVER_ACTION_DATA: give DRV_ACTION before the ID, or on stdin"


@pytest.mark.parametrize("args", [[], ["a", "b", "c"]])
def test_an_image_action_takes_one_or_two_arguments(cli, args):
    result = cli("image", "rm", *args)
    assert result.rc == 2
    assert "DRV_ACTION" in result.err


def test_a_call_on_stdin_says_the_caller_is_6_8_or_later(cli, stdin):
    stdin(action_xml({"SIZE": "8", "FSTYPE": "ext4"}))  # conftest: OPENNEBULA_VERSION=3.4
    result = cli("image", "mkfs", "7")
    assert result.rc == 2
    assert error_block(result.err) == ("called as OpenNebula 6.8 and later call (the action on stdin), but "
                                       "OPENNEBULA_VERSION says 3.4")


def test_an_argument_call_of_an_unknown_version_is_refused_before_any_command(cli, monkeypatch, tmp_path):
    monkeypatch.delenv("ONE_ISCSI_OPENNEBULA_VERSION")
    monkeypatch.setenv("ONE_LOCATION", str(tmp_path))  # an installation that says no version
    monkeypatch.setenv("ONE_ISCSI_HOST", "tgt1")
    result = cli("image", "mkfs", action_xml({"SIZE": "8", "FSTYPE": "ext4"}), "7")
    assert result.rc == 2
    assert error_block(result.err).startswith("cannot tell which OpenNebula calls, and so how to reply: set "
                                              "OPENNEBULA_VERSION in iscsi.conf")


def test_mkfs_of_a_qcow2_datablock_is_refused_before_any_command(cli, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_OPENNEBULA_VERSION", "6.10")
    result = cli("image", "mkfs", action_xml({"SIZE": "8", "FORMAT": "qcow2", "FS": "ext4"}), "7")
    assert result.rc == 2
    assert error_block(result.err) == "mkfs of FORMAT qcow2 is not supported: the iscsi driver makes raw images"


@pytest.mark.parametrize("version, non_persistent", [("3.4", ""), ("6.10", "no")])
def test_tm_clone_refused_by_version_or_configuration(cli, monkeypatch, version, non_persistent):
    monkeypatch.setenv("ONE_ISCSI_OPENNEBULA_VERSION", version)
    monkeypatch.setenv("ONE_ISCSI_NON_PERSISTENT", non_persistent)
    result = cli("tm", "clone", IQN, "node1:/var/lib/one/datastores/0/9/disk.0", "9", "0")
    assert (result.rc, error_block(result.err)) == (1, "CLONE not supported for TM_ISCSI. Use persistent images")


@pytest.mark.parametrize("args, message", [
    (["cpds", "node1:/var/lib/one/datastores/0/9/disk.0", IQN, "2", "9", "0"],
     "snapshot 2: disk snapshots are not supported by the iscsi driver"),
    (["resize", "node1:/var/lib/one/datastores/0/9/disk.0", "0", "9", "0"],
     "size must be a positive number of MB, got '0'"),
])
def test_tm_actions_refuse_bad_arguments_with_the_block(cli, args, message):
    result = cli("tm", *args)
    assert (result.rc, error_block(result.err)) == (2, message)


def vm_xml(*disks: tuple[int, str]) -> str:
    body = "".join(f"<DISK><DISK_ID>{disk}</DISK_ID><TM_MAD>{tm_mad}</TM_MAD></DISK>" for disk, tm_mad in disks)
    return encode(f"<VM><ID>9</ID><TEMPLATE>{body}</TEMPLATE></VM>")


@pytest.mark.parametrize("step", ["premigrate", "postmigrate", "failmigrate"])
def test_a_migration_step_of_a_vm_without_iscsi_disks_does_nothing(cli, stdin, step):
    stdin(vm_xml((0, "ssh"), (1, "shared")))
    result = cli("tm", step, "node1", "node2", "/var/lib/one/datastores/0/9", "9", "0")
    assert (result.rc, result.out, result.err) == (0, "", f"INFO: {step}: nothing to do\n")


def test_a_migration_step_needs_the_vm_xml_on_stdin(cli, stdin):
    stdin("", terminal=True)
    result = cli("tm", "premigrate", "node1", "node2", "/var/lib/one/datastores/0/9", "9", "0")
    assert (result.rc, error_block(result.err)) == (2, "no VM XML: it comes base64 on stdin")


def test_the_chap_password_is_the_first_line_of_its_file_or_of_stdin(tmp_path, monkeypatch):
    from oneiscsi.cli.target import read_password
    from oneiscsi.errors import InvalidInput

    secret = tmp_path / "secret"
    secret.write_text("secret-pass-12\nsecond line\n")
    assert read_password(str(secret)) == "secret-pass-12"
    monkeypatch.setattr(sys, "stdin", io.StringIO("from-stdin-1234\n"))
    assert read_password("-") == "from-stdin-1234"
    with pytest.raises(InvalidInput, match=f"cannot read the password file {tmp_path}/absent: No such file"):
        read_password(str(tmp_path / "absent"))


def test_chap_set_takes_no_password_on_the_command_line(cli):
    result = cli("target", "chap", "set", "1", "--user", "u", "--password", "secret-pass-12")
    assert result.rc == 2 and "No such option: --password" in result.err
