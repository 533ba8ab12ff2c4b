import json
import subprocess
import sys
from pathlib import Path

import pytest

from oneiscsi import __version__

IQN = "iqn.2012-02.org.opennebula:iscsitarget.vg-one.lv-one-7"


def test_version(cli):
    assert cli("--version").out == f"one-iscsi {__version__}\n"


@pytest.mark.parametrize("path", [
    [], ["target"], ["target", "new"], ["target", "bind-all"], ["target", "delete"], ["target", "tid"],
    ["target", "list"], ["target", "show"], ["lun"], ["lun", "bind"], ["host"], ["host", "discover"],
    ["host", "login"], ["host", "logout"], ["host", "is-iscsi"], ["iqn"], ["iqn", "parse"],
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
    assert built == ({group} if group else {"target", "lun", "host", "iqn", "image", "tm"})


def test_unknown_group_is_a_usage_error(cli):
    result = cli("nonsense")
    assert result.rc == 2 and "No such command 'nonsense'" in result.err
