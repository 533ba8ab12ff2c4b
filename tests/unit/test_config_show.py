"""`one-iscsi config show`, and the warnings about unknown keys of iscsi.conf
that every command prints."""
import json

import pytest
from support.driver import action_xml

from oneiscsi import config

IQN = "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-7"


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "iscsi.conf"
    path.write_text("# iscsi.conf\nHOST=tgt1\nCHAP_USER=joe\nCHAP_PASSWORD=secretsecret12\n")
    return str(path)


def test_show_json_has_every_key_its_value_and_origin(cli, conf, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_TIMEOUT", "5")
    shown = cli("--config", conf, "config", "show", "--json")
    assert shown.rc == 0, shown.err
    rows = json.loads(shown.out)
    assert [row["key"] for row in rows] == [key.name for key in config.KEYS]
    assert all(set(row) == {"key", "value", "origin"} for row in rows)
    by_key = {row["key"]: (row["value"], row["origin"]) for row in rows}
    assert by_key["HOST"] == ("tgt1", f"{conf}:2")
    assert by_key["CHAP_USER"] == ("joe", f"{conf}:3")
    assert by_key["TIMEOUT"] == ("5", "environment ONE_ISCSI_TIMEOUT")
    assert by_key["VG_NAME"] == ("vg-one", "default")
    assert json.loads(cli("--config", conf, "-H", "tgt2", "config", "show", "--json").out)[0] == {
        "key": "HOST", "value": "tgt2", "origin": "the command line"}


def test_show_table_has_a_row_per_key(cli, conf):
    shown = cli("--config", conf, "config", "show")
    assert shown.rc == 0, shown.err
    header, rule, *rows = shown.out.splitlines()
    assert header.split() == ["KEY", "VALUE", "ORIGIN"]
    assert rows[0].split() == ["HOST", "tgt1", f"{conf}:2"]
    as_json = json.loads(cli("--config", conf, "config", "show", "--json").out)
    assert len(rows) == len(as_json)
    for row, data in zip(rows, as_json):
        assert row.split(maxsplit=1)[0] == data["key"] and row.endswith(data["origin"])
        assert row[len(data["key"]):-len(data["origin"])].strip() == data["value"]


@pytest.mark.parametrize("form", [[], ["--json"]], ids=["table", "json"])
def test_show_masks_secrets(cli, conf, form):
    shown = cli("--config", conf, "config", "show", *form)
    assert "secretsecret12" not in shown.out and "********" in shown.out
    unset = cli("config", "show", *form)
    assert unset.rc == 0 and "********" not in unset.out


@pytest.fixture
def misspelt(tmp_path):
    path = tmp_path / "iscsi.conf"
    path.write_text("HOST=tgt1\nINITIATOR=10.0.0.1\n")
    return str(path)


@pytest.mark.parametrize("quiet", [[], ["--quiet"]], ids=["plain", "quiet"])
def test_every_command_warns_of_unknown_keys_on_stderr_only(cli, tmp_path, misspelt, quiet):
    warning = f"one-iscsi: warning: {misspelt}:2: unknown key INITIATOR (did you mean INITIATORS?)\n"
    clean = tmp_path / "clean.conf"
    clean.write_text("HOST=tgt1\n")
    parsed = cli(*quiet, "--config", misspelt, "iqn", "parse", IQN)
    assert (parsed.rc, parsed.err) == (0, warning)
    assert parsed.out == cli("--config", str(clean), "iqn", "parse", IQN).out
    shown = cli(*quiet, "--config", misspelt, "config", "show")
    assert shown.rc == 0 and shown.err == warning


def test_a_driver_action_warns_and_replies_as_without_the_unknown_key(cli, tmp_path, misspelt):
    image = tmp_path / "image.img"
    image.write_bytes(b"\x01" * (1024 * 1024 + 1))
    done = cli("--config", misspelt, "image", "stat", action_xml({"PATH": str(image)}), "7")
    assert (done.rc, done.out) == (0, "2\n")
    assert done.err == f"one-iscsi: warning: {misspelt}:2: unknown key INITIATOR (did you mean INITIATORS?)\n"
