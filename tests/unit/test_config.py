import pytest

from oneiscsi import config
from oneiscsi.config import ConfigError


def test_defaults_are_the_original_iscsi_conf(monkeypatch):
    monkeypatch.setattr(config, "hostname", lambda: "front1")
    cfg = config.load(env={})
    assert (cfg.host, cfg.base_iqn, cfg.vg_name, cfg.base_tid) == (
        "localhost", "iqn.2012-02.org.opennebula", "vg-one", 1)
    assert cfg.no_iscsi == ("front1",)
    assert cfg.sudo == ("sudo",) and cfg.ssh == ("ssh",)
    assert cfg.tool("tgtadm") == ("tgtadm",) and cfg.tool("qemu-img") == ("qemu-img",)
    assert cfg.tool("mkdir") is None


def test_shell_syntax(tmp_path):
    conf = tmp_path / "iscsi.conf"
    conf.write_text(
        "# comment\n\n"
        "HOST=tgt1   # trailing comment\n"
        'VG_NAME="vg-images"\n'
        "export BASE_IQN='iqn.2020-01.com.example'\n"
        "NO_ISCSI=\"$HOSTNAME other ${HOST}\"\n"
        "SUDO='$NOT_EXPANDED'\n"
        "SSH=\"ssh -p 2222\"\n"
        "UNRELATED_VARIABLE=1\n")
    cfg = config.load(str(conf), env={"HOSTNAME": "front1"})
    assert cfg.host == "tgt1"
    assert cfg.vg_name == "vg-images"
    assert cfg.base_iqn == "iqn.2020-01.com.example"
    assert cfg.no_iscsi == ("front1", "other", "tgt1")
    assert cfg.sudo == ("$NOT_EXPANDED",)
    assert cfg.ssh == ("ssh", "-p", "2222")


@pytest.mark.parametrize("line, value", [
    ("BASE_IQN=iqn.x#y", "iqn.x#y"),              # '#' inside a word is not a comment
    ("BASE_IQN=iqn.x #comment", "iqn.x"),
    ("BASE_IQN=pre'$HOSTNAME'", "pre$HOSTNAME"),   # single quotes anywhere: literal
    ("BASE_IQN=''$HOSTNAME", "front1"),
    ('BASE_IQN="\\$HOSTNAME"', "$HOSTNAME"),        # escaped in double quotes
    ('BASE_IQN=a\\ b', "a b"),
    ('BASE_IQN="a b"c', "a bc"),
    ("BASE_IQN=${HOSTNAME}-x", "front1-x"),
    ("BASE_IQN=$UNSET_VARIABLE_X", ""),
])
def test_values_are_read_as_the_shell_reads_them(line, value):
    assert config.parse_shell_conf(line + "\n", "iscsi.conf", {"HOSTNAME": "front1"})["BASE_IQN"] == value


def test_hostname_from_the_machine_when_not_in_environment(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "hostname", lambda: "front9")
    conf = tmp_path / "iscsi.conf"
    conf.write_text('NO_ISCSI="$HOSTNAME"\n')
    assert config.load(str(conf), env={}).no_iscsi == ("front9",)


def test_precedence(tmp_path):
    conf = tmp_path / "iscsi.conf"
    conf.write_text("HOST=from-conf\nVG_NAME=from-conf\nBASE_TID=2\nBASE_IQN=iqn.2001-01.conf\n")
    cfg = config.load(
        str(conf),
        template={"VG_NAME": "from-template", "HOST": "from-template", "BASE_TID": "3"},
        env={"ONE_ISCSI_HOST": "from-env", "ONE_ISCSI_BASE_TID": "4"},
        overrides={"BASE_TID": "5", "VG_NAME": None})
    assert cfg.base_iqn == "iqn.2001-01.conf"
    assert cfg.vg_name == "from-template"
    assert cfg.host == "from-env"
    assert cfg.base_tid == 5


def test_conf_file_from_environment(tmp_path):
    conf = tmp_path / "iscsi.conf"
    conf.write_text("HOST=via-env-file\n")
    assert config.load(env={"ONE_ISCSI_CONF": str(conf)}).host == "via-env-file"


def test_commands_are_argv_prefixes():
    cfg = config.load(env={"ONE_ISCSI_TGTADM": "tgtadm -C 7", "ONE_ISCSI_SUDO": "",
                           "ONE_ISCSI_QEMU_IMG": "'/opt/my qemu/qemu-img'"})
    assert cfg.tool("tgtadm") == ("tgtadm", "-C", "7")
    assert cfg.tool("qemu-img") == ("/opt/my qemu/qemu-img",)
    assert cfg.sudo == ()


@pytest.mark.parametrize("text, message", [
    ("BASE_TID=0\n", "BASE_TID must be a positive integer, got '0'"),
    ("BASE_TID=abc\n", "BASE_TID must be a positive integer"),
    ("TIMEOUT=-1\n", "TIMEOUT must be a positive number"),
    ("TGTADM=\n", "TGTADM must not be empty"),
    ("HOST tgt1\n", ":1: expected KEY=VALUE"),
    ("HOST='tgt1\n", ":1: no closing ' in the value of HOST"),
    ("# x\nHOST=a b\n", ":2: spaces outside quotes in the value of HOST"),
    ("TIMEOUT=nan\n", "TIMEOUT must be a positive number"),
    ("TIMEOUT=inf\n", "TIMEOUT must be a positive number"),
    ("CHAP_USER=joe\n", "CHAP_USER and CHAP_PASSWORD go together"),
])
def test_bad_configuration_is_refused_with_a_clear_message(tmp_path, text, message):
    conf = tmp_path / "iscsi.conf"
    conf.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config.load(str(conf), env={})


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration .*nope.conf"):
        config.load(str(tmp_path / "nope.conf"), env={})


def test_config_is_immutable():
    cfg = config.load(env={})
    with pytest.raises(Exception):
        cfg.host = "other"
    with pytest.raises(TypeError):
        cfg.tools["tgtadm"] = ("x",)
