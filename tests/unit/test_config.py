import dataclasses
import os
import re
import subprocess
from pathlib import Path

import pytest

from oneiscsi import config
from oneiscsi.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "remotes" / "datastore" / "iscsi" / "iscsi.conf"
README = ROOT / "README.md"


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
    ("BASE_TID=0\n", "BASE_TID must be an integer from 1 to 2147483647, got '0' (from ISCSI_CONF:1)"),
    ("BASE_TID=abc\n", "BASE_TID must be an integer from 1 to 2147483647"),
    ("TIMEOUT=-1\n", "TIMEOUT must be a positive number"),
    ("TGTADM=\n", "TGTADM must not be empty"),
    ("HOST tgt1\n", ":1: expected KEY=VALUE"),
    ("HOST='tgt1\n", ":1: no closing ' in the value of HOST"),
    ("# x\nHOST=a b\n", ":2: spaces outside quotes in the value of HOST"),
    ("TIMEOUT=nan\n", "TIMEOUT must be a positive number"),
    ("TIMEOUT=inf\n", "TIMEOUT must be a positive number"),
    ("CHAP_USER=joe\n", "CHAP_USER and CHAP_PASSWORD go together"),
    ("UMASK=800\n", "UMASK must be an octal number from 0 to 777, got '800'"),
    ("BACKEND=zfs\n", "BACKEND must be one of lvm, file, got 'zfs'"),
    ("SUDO=\"sudo 'x\"\n", "SUDO must be a command line in shell syntax (No closing quotation), got \"sudo 'x\""),
    ("SSH=\n", "SSH must not be empty"),
    ("CHAP_USER='j oe'\nCHAP_PASSWORD=secretsecret\n",
     "CHAP_USER must be up to 255 letters, digits and _ . @ : - (not starting with -), got 'j oe' (from ISCSI_CONF:1)"),
    ("# users\nCHAP_USER=--op\nCHAP_PASSWORD=secretsecret\n", "CHAP_USER must be up to 255 letters, digits and "
     "_ . @ : - (not starting with -), got '--op' (from ISCSI_CONF:2)"),
    ("CHAP_USER=joe\nCHAP_PASSWORD=abc\n", "CHAP_PASSWORD must be 12 to 16 letters"),
    ("CHAP_USER=joe\nCHAP_PASSWORD='pass$(touch x)'\n", "CHAP_PASSWORD must be 12 to 16 letters"),
    ("UMASK=000\n", "UMASK must deny others write access (e.g. 077, 027, 022), got '000'"),
    ("UMASK=075\n", "UMASK must deny others write access"),
    ("POOL_DIR=srv/pool\n", "POOL_DIR must be an absolute path, got 'srv/pool' (from ISCSI_CONF:1)"),
    ("POOL_DIR=/srv/../etc\n", "POOL_DIR must be a normalised path (no //, . or ..), got '/srv/../etc'"),
    ("POOL_DIR='/srv/p$(touch /tmp/z)'\n", "POOL_DIR must hold only letters, digits and . _ + - /"),
    ("CONF_DIR='/etc/tgt/conf d'\n", "CONF_DIR must hold only letters"),
    ("LOCK_FILE=/run//x.lock\n", "LOCK_FILE must be a normalised path"),
    ("DEVICE_DIR='/dev/disk/`x`'\n", "DEVICE_DIR must hold only letters"),
    ("INITIATORS='127.0.0.1;touch${IFS}/tmp/x'\n", "INITIATORS must be ALL, addresses, networks (a.b.c.d/n) "
     "or initiator names (iqn., eui., naa.), got '127.0.0.1;touch${IFS}/tmp/x'"),
    ("INITIATORS='</target>'\n", "INITIATORS must be ALL, addresses"),
    ("INITIATORS='10.0.0.0/33'\n", "INITIATORS must be ALL, addresses"),
    ("PORTAL_PORT=70000\n", "PORTAL_PORT must be an integer from 1 to 65535, got '70000'"),
    ("BASE_TID=99999999999\n", "BASE_TID must be an integer from 1 to 2147483647"),
    ("TARGET_SERVERS='tgt1 tgt2:3260'\n", "TARGET_SERVERS must be a host name (letters, digits, '.' and '-' only), got 'tgt1 tgt2:3260'"),
])
def test_bad_configuration_is_refused_with_a_clear_message(tmp_path, text, message):
    conf = tmp_path / "iscsi.conf"
    conf.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message.replace("ISCSI_CONF", str(conf)))) as refused:
        config.load(str(conf), env={})
    assert refused.value.exit_code == 2


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration .*nope.conf"):
        config.load(str(tmp_path / "nope.conf"), env={})


def test_config_is_immutable():
    cfg = config.load(env={})
    with pytest.raises(Exception):
        cfg.host = "other"
    with pytest.raises(TypeError):
        cfg.tools["tgtadm"] = ("x",)


def test_every_key_is_an_attribute_of_config():
    cfg = config.load(env={"HOSTNAME": "front1"})
    assert [f.name for f in dataclasses.fields(cfg) if f.init] == [key.attribute for key in config.KEYS]
    assert isinstance(cfg.base_tid, int) and isinstance(cfg.timeout, float) and cfg.umask == 0o77
    assert cfg.initiators == ("ALL",) and config.load(env={"ONE_ISCSI_INITIATORS": ""}).initiators == ("ALL",)
    assert cfg.copy_ssh_options == ("-o", "Ciphers=^aes128-gcm@openssh.com,aes256-gcm@openssh.com")
    assert config.DEFAULTS == {key.name: key.default for key in config.KEYS}
    assert set(config.TOOL_KEYS) <= set(config.DEFAULTS)


def test_replace_keeps_the_tools_in_step():
    cfg = dataclasses.replace(config.load(env={}), tgtadm=("tgtadm", "-C", "7"))
    assert cfg.tool("tgtadm") == ("tgtadm", "-C", "7")
    with pytest.raises(ConfigError, match="go together"):
        dataclasses.replace(cfg, chap_user="joe")


def test_template_keys_are_those_of_the_original_driver_and_no_command():
    assert config.TEMPLATE_KEYS == ("HOST", "VG_NAME", "BASE_IQN", "BASE_TID", "TARGET", "RESTRICTED_DIRS",
                                    "SAFE_DIRS", "UMASK", "BACKEND", "POOL_DIR", "INITIATORS", "CHAP_USER",
                                    "CHAP_PASSWORD", "COPY_VIA", "COPY_PORTAL")


def test_template_attributes_other_than_template_keys_are_ignored():
    template = {"VG_NAME": "vg-ds", "HOST": "", "TIMEOUT": "5", "SUDO": "doas", "TGTADM": "evil",
                "DS_MAD": "iscsi", "TM_MAD": "iscsi"}
    assert config.load(template=template, env={}) == dataclasses.replace(config.load(env={}), vg_name="vg-ds")


def test_secret_keys_never_appear_in_repr_or_messages(tmp_path):
    secrets = [key.name for key in config.KEYS if key.secret]
    assert "CHAP_PASSWORD" in secrets
    env = {"ONE_ISCSI_CHAP_USER": "joe", **{f"ONE_ISCSI_{name}": f"Sec{i}ret-value" for i, name in enumerate(secrets)}}
    cfg = config.load(env=env)
    assert cfg.chap_password == "Sec0ret-value"
    assert "ret-value" not in repr(cfg) and "chap_password" not in repr(cfg)
    with pytest.raises(ConfigError) as refused:
        config.load(env={**env, "ONE_ISCSI_CHAP_PASSWORD": "Sec ret-value"})
    assert str(refused.value) == ("CHAP_PASSWORD must be 12 to 16 letters, digits and _ . @ : + = % , / ^ ~ - "
                                  "(not starting with - or ~) (from environment ONE_ISCSI_CHAP_PASSWORD)")


@pytest.mark.parametrize("value", ["fe80::1%$(reboot)", "fe80::1%`reboot`", "fe80::1%;reboot", "fe80::1%eth0",
                                   "iqn.\u0661\u0662\u0663\u0664-01.com.example"])
def test_initiators_refuse_ipv6_zones_and_anything_else_a_shell_reads(value):
    with pytest.raises(ConfigError, match="^INITIATORS must be ALL, addresses, networks"):
        config.load(env={"ONE_ISCSI_INITIATORS": f"10.0.0.9 {value}"})
    assert config.load(env={"ONE_ISCSI_INITIATORS": "fe80::1 fd00::/8 10.0.0.0/24"}).initiators == (
        "fe80::1", "fd00::/8", "10.0.0.0/24")


def test_a_chap_password_never_starts_with_a_tilde():
    with pytest.raises(ConfigError, match="not starting with - or ~"):
        config.load(env={"ONE_ISCSI_CHAP_USER": "joe", "ONE_ISCSI_CHAP_PASSWORD": "~/secret-pass"})
    assert config.load(env={"ONE_ISCSI_CHAP_USER": "joe", "ONE_ISCSI_CHAP_PASSWORD": "se~cret-pass"}).chap_password


def uncommented(text: str) -> str:
    """The sample with every commented-out key set, as an administrator would."""
    return re.sub(r"(?m)^#(?=[A-Z_]+=)", "", text)


def test_checked_in_sample_is_up_to_date():
    assert SAMPLE.read_text() == config.sample_conf(), f"{SAMPLE.relative_to(ROOT)} is out of date: run `make conf`"


def test_sample_has_every_key_with_its_help():
    text = config.sample_conf()
    blocks = {block.splitlines()[-1].lstrip("#").split("=")[0]: block.splitlines()
              for block in text.split("\n\n")[1:]}
    assert list(blocks) == [key.name for key in config.KEYS]
    for key in config.KEYS:
        *comment, line = blocks[key.name]
        assert " ".join(c[len("# "):] for c in comment) == key.help
        assert line.startswith(key.name if key.active else "#" + key.name)
        if key.secret:
            assert line == f"#{key.name}="
    assert list(config.parse_shell_conf(text, "iscsi.conf", {})) == ["HOST", "VG_NAME", "BASE_IQN", "BASE_TID",
                                                                     "NO_ISCSI"]
    assert 'NO_ISCSI="$HOSTNAME"' in text.splitlines()
    header = " ".join(line[len("# "):] for line in text.split("\n\n")[0].splitlines())
    assert ", ".join(config.TEMPLATE_KEYS) in header and "ONE_ISCSI_<KEY>" in header


@pytest.mark.parametrize("edit", [str, uncommented], ids=["as-is", "uncommented"])
def test_loading_the_sample_gives_the_defaults(tmp_path, edit):
    conf = tmp_path / "iscsi.conf"
    conf.write_text(edit(SAMPLE.read_text()))
    env = {"HOSTNAME": "front1"}
    assert config.load(str(conf), env=env) == config.load(env=env)


def test_the_shell_reads_the_sample_as_one_iscsi_does(tmp_path):
    conf = tmp_path / "iscsi.conf"
    conf.write_text(uncommented(config.sample_conf()))
    script = '. "$1" && printf "%s\\0" ' + " ".join(f'"${key}"' for key in config.DEFAULTS)
    done = subprocess.run(["sh", "-c", script, "sh", str(conf)], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOSTNAME": "front1"})
    assert done.returncode == 0, done.stderr
    parsed = config.parse_shell_conf(conf.read_text(), "iscsi.conf", {"HOSTNAME": "front1"})
    assert done.stdout.split("\0")[:-1] == [parsed[key] for key in config.DEFAULTS]


def configuration_section() -> str:
    text = README.read_text()
    start = text.index("\n## Configuration\n")
    return text[start:text.index("\n## ", start + 1)]


def test_every_key_is_in_the_readme_table_with_its_default():
    table = {}
    for row in configuration_section().splitlines():
        if row.startswith("| `"):
            names, default = row.split(" | ")[:2]
            table.update(dict.fromkeys(re.findall(r"`([A-Z_]+)`", names), default))
    assert set(table) == set(config.DEFAULTS)
    for key in config.KEYS:
        if key.name in config.TOOL_KEYS and table[key.name] == "the program's name":
            assert key.default == config.TOOL_KEYS[key.name]
        else:
            shown = key.shown or (f"`{key.default}`" if key.default and not key.secret else "empty")
            assert table[key.name] == shown, key.name


def test_readme_names_exactly_the_template_keys():
    sentence = re.search(r"The datastore template may set (.*?);", configuration_section(), re.DOTALL)
    assert re.findall(r"`([A-Z_]+)`", sentence.group(1)) == list(config.TEMPLATE_KEYS)


@pytest.mark.parametrize("key, value", [
    ("INITIATORS", "127.0.0.1;touch${IFS}/tmp/x"), ("INITIATORS", "</target>"),
    ("CHAP_USER", "joe\nincominguser evil"), ("POOL_DIR", "/srv/p$(touch${IFS}/tmp/z)"),
    ("POOL_DIR", "/srv/p\nincominguser evil secretsecret"), ("CHAP_PASSWORD", "pass$(touch${IFS}/tmp/y)"),
    ("VG_NAME", "vg;x"), ("UMASK", "000"),
])
def test_a_bad_template_value_names_the_template(key, value):
    template = {"CHAP_USER": "joe", "CHAP_PASSWORD": "secretsecret", key: value}
    with pytest.raises(ConfigError, match=rf"^{key} .*\(from the datastore template\)$"):
        config.load(template=template, env={})


def test_good_values_pass_and_are_normalised():
    cfg = config.load(env={}, template={
        "INITIATORS": "10.0.0.1 192.168.0.0/24 fd00::/8 iqn.1993-08.org.debian:01:abc ALL",
        "CHAP_USER": "one.user@x", "CHAP_PASSWORD": "a-b_c.d+e=f%g,", "POOL_DIR": "/srv/pool/", "UMASK": "027"})
    assert cfg.initiators == ("10.0.0.1", "192.168.0.0/24", "fd00::/8", "iqn.1993-08.org.debian:01:abc", "ALL")
    assert (cfg.pool_dir, cfg.umask) == ("/srv/pool", 0o027)


@pytest.mark.parametrize("key, value, message", [
    ("OPENNEBULA_VERSION", "6", "must be an OpenNebula version such as 3.4, 6.10 or 7.0"),
    ("OPENNEBULA_VERSION", "6.10;x", "must be an OpenNebula version"),
    ("OPENNEBULA_VERSION", "v6.10", "must be an OpenNebula version"),
    ("NON_PERSISTENT", "maybe", "must be one of (empty), yes, no"),
    ("ONE_LOCATION", "relative/one", ""),
])
def test_the_opennebula_keys_are_checked(key, value, message):
    with pytest.raises(ConfigError) as caught:
        config.load(env={f"ONE_ISCSI_{key}": value})
    assert str(caught.value).startswith(f"{key} {message}")


def test_the_opennebula_keys():
    cfg = config.load(env={"ONE_ISCSI_OPENNEBULA_VERSION": "6.10", "ONE_ISCSI_NON_PERSISTENT": "YES",
                           "ONE_LOCATION": "/opt/one"})
    assert (cfg.opennebula_version, cfg.non_persistent, cfg.one_location) == ("6.10", "yes", "/opt/one")
    cfg = config.load(env={})
    assert (cfg.opennebula_version, cfg.non_persistent, cfg.one_location) == ("", "", "")


def test_unknown_keys_are_warned_with_the_nearest_key(tmp_path):
    conf = tmp_path / "iscsi.conf"
    conf.write_text("HSOT=tgt1\n# the hosts\nINITIATOR=10.0.0.1\nhost=tgt2\nFOO=1\nHOST=tgt3\n")
    cfg = config.load(str(conf), env={})
    assert cfg.warnings == (f"{conf}:1: unknown key HSOT (did you mean HOST?)",
                            f"{conf}:3: unknown key INITIATOR (did you mean INITIATORS?)",
                            f"{conf}:4: unknown key host (did you mean HOST?)",
                            f"{conf}:5: unknown key FOO")
    assert (cfg.host, cfg.initiators) == ("tgt3", ("ALL",))


def test_variables_that_keys_expand_are_no_unknown_keys(tmp_path):
    conf = tmp_path / "iscsi.conf"
    conf.write_text('BASE=/srv\nPOOL="${BASE}/one"\nPOOL_DIR=$POOL\nQUOTED=x\nSAFE_DIRS=\'$QUOTED\'\n'
                    "UNUSED=y\nTARGET_SERVERS=tgt1\n")
    cfg = config.load(str(conf), env={})
    assert cfg.pool_dir == "/srv/one"
    assert cfg.warnings == (f"{conf}:4: unknown key QUOTED", f"{conf}:6: unknown key UNUSED")


def test_the_sample_has_no_unknown_key(tmp_path):
    conf = tmp_path / "iscsi.conf"
    conf.write_text(uncommented(SAMPLE.read_text()))
    assert config.load(str(conf), env={}).warnings == ()


def test_a_refused_configuration_names_the_unknown_keys_too(tmp_path):
    conf = tmp_path / "iscsi.conf"
    conf.write_text("CHAP_USER=joe\nCHAP_PASWORD=secretsecret\n")
    with pytest.raises(ConfigError) as refused:
        config.load(str(conf), env={})
    assert str(refused.value) == ("CHAP_USER and CHAP_PASSWORD go together: set both or neither; "
                                  f"{conf}:2: unknown key CHAP_PASWORD (did you mean CHAP_PASSWORD?)")


def test_settings_hold_each_text_and_where_it_came_from(tmp_path):
    conf = tmp_path / "iscsi.conf"
    conf.write_text("# x\nVG_NAME=vg-conf\nHOST=conf\nBASE_TID=2\n")
    cfg = config.load(str(conf), template={"HOST": "template", "DS_MAD": "iscsi"},
                      env={"HOSTNAME": "front1", "ONE_ISCSI_BASE_TID": "3", "ONE_ISCSI_TIMEOUT": "5"},
                      overrides={"TIMEOUT": "7", "BASE_IQN": None})
    assert list(cfg.settings) == [key.name for key in config.KEYS]
    assert {name: tuple(cfg.settings[name]) for name in ("VG_NAME", "HOST", "BASE_TID", "TIMEOUT", "NO_ISCSI",
                                                           "BASE_IQN")} == {
        "VG_NAME": ("vg-conf", f"{conf}:2"), "HOST": ("template", "the datastore template"),
        "BASE_TID": ("3", "environment ONE_ISCSI_BASE_TID"), "TIMEOUT": ("7", "the command line"),
        "NO_ISCSI": ("front1", "default"), "BASE_IQN": ("iqn.2012-02.org.opennebula", "default")}
