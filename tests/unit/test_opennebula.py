import io

import pytest

from oneiscsi import config, opennebula
from oneiscsi.tm import HostPath
from oneiscsi.errors import InvalidInput, OneIscsiError
from support.driver import action_xml, encode


def test_decode_reads_image_template_and_datastore():
    act = opennebula.decode(action_xml({"PATH": "/tmp/a b.img", "SIZE": "10", "SOURCE": ""},
                                       {"MD5": "abc"}, {"HOST": "tgt1", "VG_NAME": "vg-x", "UNKNOWN": "y"}), "7")
    assert act.image_id == 7
    assert act.image["PATH"] == "/tmp/a b.img" and act.image["SIZE"] == "10"
    assert act.image_template == {"MD5": "abc"}
    assert act.datastore == {"HOST": "tgt1", "VG_NAME": "vg-x", "UNKNOWN": "y"}
    cfg = config.load(template=act.datastore, env={})
    assert (cfg.host, cfg.vg_name) == ("tgt1", "vg-x")
    assert act.require("PATH") == "/tmp/a b.img"
    with pytest.raises(InvalidInput, match="missing IMAGE/SOURCE"):
        act.require("SOURCE")


def test_decode_accepts_wrapped_base64():
    data = action_xml({"PATH": "/x"})
    wrapped = "\n".join(data[i:i + 60] for i in range(0, len(data), 60))
    assert opennebula.decode(wrapped, "1").image["PATH"] == "/x"


@pytest.mark.parametrize("data, image_id, message", [
    ("@@@", "1", "malformed base64"),
    (encode("<DS_DRIVER_ACTION_DATA>"), "1", "malformed XML"),
    (encode("<A/>"), "1", "expected <DS_DRIVER_ACTION_DATA>"),
    (encode('<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/hostname">]><DS_DRIVER_ACTION_DATA>&x;'
            "</DS_DRIVER_ACTION_DATA>"), "1", "refused XML"),
    (action_xml({"PATH": "/x"}), "-1", "^ID must be a non-negative integer, got '-1'$"),
    (action_xml({"PATH": "/x"}), "7;id", "^ID must be a non-negative integer, got '7;id'$"),
    (action_xml({"PATH": "/x"}), "٧", "^ID must be a non-negative integer"),
    (action_xml({"PATH": "/x"}), "", "^ID must be a non-negative integer, got ''$"),
])
def test_decode_refuses(data, image_id, message):
    with pytest.raises(InvalidInput, match=message):
        opennebula.decode(data, image_id)


def test_host_path():
    assert opennebula.host_path("node1:/var/lib/one/0/7/disk.0") == HostPath("node1", "/var/lib/one/0/7/disk.0")
    for bad in ("node1", ":/x", "node1:relative", ""):
        with pytest.raises(InvalidInput, match="expected HOST:/PATH"):
            opennebula.host_path(bad)


def test_error_message_block_is_one_line():
    out = io.StringIO()
    opennebula.error_message("cp", "first\nsecond", stream=out)
    assert out.getvalue() == ("ERROR: cp: first second\nERROR MESSAGE --8<------\nfirst second\n"
                              "ERROR MESSAGE ------>8--\n")


def test_log_lines(capsys):
    opennebula.log_info("rm", "done")
    assert capsys.readouterr().err == "INFO: rm: done\n"


SOURCE = "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-7"


@pytest.mark.parametrize("version, cp, mkfs", [
    ((3, 4), f"{SOURCE} 64", f"{SOURCE} 64"),
    ((3, 8, 4), f"{SOURCE} 64", f"{SOURCE} 64"),
    ((4,), SOURCE, SOURCE),
    ((4, 14, 2), SOURCE, SOURCE),
    ((5, 12), SOURCE, SOURCE),
    ((6, 0), f"{SOURCE} qcow2", SOURCE),
    ((6, 10), f"{SOURCE} qcow2", SOURCE),
    ((7, 0), f"{SOURCE} qcow2", SOURCE),
])
def test_replies_are_what_each_version_parses(version, cp, mkfs):
    assert opennebula.cp_reply(version, SOURCE, 64, "qcow2") == cp
    assert opennebula.mkfs_reply(version, SOURCE, 64) == mkfs


def test_monitor_reply():
    assert opennebula.monitor_reply(10, 30, 20) == "USED_MB=10\nTOTAL_MB=30\nFREE_MB=20"
    assert not hasattr(opennebula, "registered_reply")


def test_typed_fields_of_the_action():
    act = opennebula.decode(action_xml({"PATH": "/img", "SIZE": "64", "FSTYPE": "ext4"}, {"MD5": "ab", "X": "y"},
                                       {"HOST": "tgt2", "TIMEOUT": "1"}), "7")
    assert (act.path, act.size_mb, act.filesystem((3, 4)), act.image_id) == ("/img", 64, "ext4", 7)
    assert not act.save_as and not act.keeps_qcow2
    assert act.checksums == {"md5": "ab", "sha1": ""}
    cfg = config.load(template=act.datastore, env={})  # only what a datastore template may set
    assert (cfg.host, cfg.timeout) == ("tgt2", 60)
    for size in ("0", "-1", "8;x", "1e3"):
        with pytest.raises(InvalidInput, match="IMAGE/SIZE must be a positive number of MB"):
            opennebula.decode(action_xml({"SIZE": size}), "7").size_mb


# mkfs: what to make, as each version names it

def action(image=None, template=None):
    return opennebula.decode(action_xml(image or {}, template or {}), "7")


@pytest.mark.parametrize("image, version, filesystem", [
    ({"FSTYPE": "ext4"}, (3, 4), "ext4"),
    ({"FSTYPE": " jfs "}, (3, 4), "jfs"),
    ({}, (3, 4), "ext3"),                    # 3.4's driver made ext3 when none was named
    ({"FSTYPE": ""}, (3, 8), "ext3"),
    ({"FS": "xfs"}, (3, 4), "ext3"),         # 3.x knows no FS
    ({"FS": "ext4"}, (6, 10), "ext4"),
    ({"FS": "ext4", "FORMAT": "raw"}, (6, 0), "ext4"),
    ({}, (6, 10), "raw"),                    # from 4 on: no filesystem unless one is named
    ({"FSTYPE": "ext4"}, (4, 12), "ext4"),   # 4.x named it FSTYPE still
    ({"FSTYPE": "ext4", "FS": "ext2"}, (6, 10), "ext2"),
    ({"FS": " "}, (4, 0), "raw"),
])
def test_filesystem_by_version(image, version, filesystem):
    assert action(image).filesystem(version) == filesystem


@pytest.mark.parametrize("data_format", ["qcow2", "vmdk", "save_as"])
def test_filesystem_refuses_a_format_other_than_raw(data_format):
    with pytest.raises(InvalidInput) as caught:
        action({"FORMAT": data_format, "FS": "ext4"}).filesystem((6, 10))
    assert str(caught.value) == (f"mkfs of FORMAT {data_format} is not supported: the iscsi driver makes raw "
                                 "images")


@pytest.mark.parametrize("image, save_as", [
    ({"FSTYPE": "save_as"}, True), ({"FORMAT": "save_as"}, True), ({"FSTYPE": "ext4"}, False),
    ({"FORMAT": "raw"}, False), ({}, False), ({"FS": "save_as"}, False), ({"FSTYPE": "SAVE_AS"}, False)])
def test_save_as(image, save_as):
    assert action(image).save_as is save_as


@pytest.mark.parametrize("template, keeps", [
    ({"DRIVER": "qcow2"}, True), ({"DRIVER": "QCOW2"}, True), ({"DRIVER": "raw"}, False), ({}, False)])
def test_keeps_qcow2_when_the_vm_reads_qcow2(template, keeps):
    assert action(template=template).keeps_qcow2 is keeps
    assert action({"DRIVER": "qcow2"}).keeps_qcow2 is False  # IMAGE/TEMPLATE's, not IMAGE's


# reading a call: the action XML as an argument (up to 6.6) or on stdin (6.8 on)

class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_read_call_with_the_xml_as_argument_reads_no_stdin():
    stdin = io.StringIO("ignored")
    assert opennebula.read_call(["DATA", "7"], stdin) == opennebula.Call("DATA", "7", False)
    assert stdin.tell() == 0


def test_read_call_with_the_id_alone_reads_the_xml_from_stdin():
    assert opennebula.read_call(["7"], io.StringIO("DATA\n")) == opennebula.Call("DATA\n", "7", True)


@pytest.mark.parametrize("arguments, stdin, message", [
    (["7"], Terminal("DATA"), f"no {opennebula.ROOT}: give DRV_ACTION before the ID, or on stdin"),
    ([], io.StringIO("DATA"), "expected DRV_ACTION ID, or ID with DRV_ACTION on stdin"),
    (["DATA", "7", "x"], io.StringIO(), "expected DRV_ACTION ID, or ID with DRV_ACTION on stdin"),
])
def test_read_call_refuses(arguments, stdin, message):
    with pytest.raises(InvalidInput) as caught:
        opennebula.read_call(arguments, stdin)
    assert str(caught.value) == message


# which OpenNebula calls

def installation(root, path, text):
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    return str(root)


@pytest.mark.parametrize("path, text, version", [
    ("var/remotes/VERSION", "6.10.0\n", "6.10.0"),
    ("var/remotes/VERSION", "  5.12 ", "5.12"),
    ("lib/ruby/opennebula/version.rb", "module OpenNebula\n    VERSION = '6.10.0'\nend\n", "6.10.0"),
    ("lib/ruby/opennebula.rb", 'module OpenNebula\n  VERSION = "3.4.1"\nend\n', "3.4.1"),
])
def test_installed_version_under_one_location(tmp_path, path, text, version):
    root = installation(tmp_path, path, text)
    assert opennebula.installed_version(root) == (version, f"{root}/{path}")


def test_installed_version_takes_the_first_file_that_says_it(tmp_path):
    root = installation(tmp_path, "var/remotes/VERSION", "not a version\n")
    installation(tmp_path, "lib/ruby/opennebula/version.rb", "# VERSION = '9.9'\n")  # a comment says nothing
    installation(tmp_path, "lib/ruby/opennebula.rb", "    VERSION = '4.14.2'\n")
    assert opennebula.installed_version(root) == ("4.14.2", f"{root}/lib/ruby/opennebula.rb")
    assert opennebula.installed_version(str(tmp_path / "nothing")) == ("", "")


def test_without_one_location_the_system_paths_are_read(tmp_path, monkeypatch):
    assert opennebula.SYSTEM_VERSION_FILES == (
        "/var/lib/one/remotes/VERSION", "/usr/lib/one/ruby/opennebula/version.rb", "/usr/lib/one/ruby/opennebula.rb",
        "/usr/lib/one/ruby/OpenNebula.rb")
    system = [str(tmp_path / name) for name in ("VERSION", "version.rb", "opennebula.rb")]
    monkeypatch.setattr(opennebula, "SYSTEM_VERSION_FILES", tuple(system))
    (tmp_path / "opennebula.rb").write_text("VERSION = '5.12.0'\n")
    assert opennebula.installed_version("") == ("5.12.0", system[2])
    (tmp_path / "VERSION").write_text("6.10.0\n")
    assert opennebula.installed_version("") == ("6.10.0", system[0])


def test_version_of_prefers_the_configured_version(tmp_path):
    root = installation(tmp_path, "var/remotes/VERSION", "6.10.0\n")
    assert opennebula.version_of("3.4", root) == (3, 4)
    assert opennebula.version_of("", root) == (6, 10, 0)
    assert opennebula.version_of("", root, on_stdin=True) == (6, 10, 0)


def test_version_of_a_call_on_stdin(tmp_path):
    assert opennebula.version_of("", str(tmp_path), on_stdin=True) == opennebula.STDIN_FROM == (6, 8)
    assert opennebula.version_of("6.4", str(tmp_path), on_stdin=True) == (6, 4)
    with pytest.raises(InvalidInput) as caught:
        opennebula.version_of("5.12", str(tmp_path), on_stdin=True)
    assert str(caught.value) == ("called as OpenNebula 6.8 and later call (the action on stdin), but "
                                 "OPENNEBULA_VERSION says 5.12")
    root = installation(tmp_path, "var/remotes/VERSION", "6.2.0\n")
    with pytest.raises(InvalidInput, match=f"but {root}/var/remotes/VERSION says 6.2.0$"):
        opennebula.version_of("", root, on_stdin=True)


def test_version_of_an_argument_call_without_any_version_is_refused(tmp_path):
    with pytest.raises(InvalidInput) as caught:
        opennebula.version_of("", str(tmp_path))
    assert "set OPENNEBULA_VERSION in iscsi.conf" in str(caught.value)
    assert f"{tmp_path}/var/remotes/VERSION, {tmp_path}/lib/ruby/opennebula/version.rb" in str(caught.value)


# the live migration steps' VM XML

def vm_xml(*disks):
    body = "".join("<DISK>" + "".join(f"<{k}>{v}</{k}>" for k, v in disk.items()) + "</DISK>" for disk in disks)
    return encode(f"<VM><ID>9</ID><TEMPLATE>{body}<NIC><TM_MAD>iscsi</TM_MAD></NIC></TEMPLATE></VM>")


def test_vm_disks_are_the_disk_ids_of_the_tm_mad():
    data = vm_xml({"DISK_ID": "0", "TM_MAD": "iscsi"}, {"DISK_ID": "1", "TM_MAD": "ssh"},
                  {"DISK_ID": "3", "TM_MAD": "iscsi"}, {"DISK_ID": "4"})
    assert opennebula.vm_disks(data) == [0, 3]
    assert opennebula.vm_disks(data, "ssh") == [1]
    assert opennebula.vm_disks(vm_xml()) == []


@pytest.mark.parametrize("data, message", [
    (vm_xml({"DISK_ID": "0;x", "TM_MAD": "iscsi"}), "VM XML: DISK_ID must be a non-negative integer, got '0;x'"),
    (vm_xml({"TM_MAD": "iscsi"}), "VM XML: DISK_ID must be a non-negative integer, got ''"),
    (action_xml({}), "expected <VM>, got <DS_DRIVER_ACTION_DATA>"),
    ("@@@", "malformed base64 in VM"),
])
def test_vm_disks_refuses(data, message):
    with pytest.raises(InvalidInput) as caught:
        opennebula.vm_disks(data)
    assert str(caught.value).startswith(message)


def test_unsupported_is_a_known_failure_naming_the_action():
    with pytest.raises(OneIscsiError) as caught:
        opennebula.unsupported("transfer", "snap_create")
    assert str(caught.value) == "snap_create is not supported by the iscsi driver (transfer action)"
    assert caught.value.exit_code == 1 and not isinstance(caught.value, InvalidInput)
