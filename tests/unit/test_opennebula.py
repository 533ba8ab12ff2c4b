import io

import pytest

from oneiscsi import config, opennebula
from oneiscsi.tm import HostPath
from oneiscsi.errors import InvalidInput
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
    (action_xml({"PATH": "/x"}), "-1", "image ID must be a non-negative integer"),
    (action_xml({"PATH": "/x"}), "7;id", "image ID must be a non-negative integer"),
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


def test_replies():
    assert opennebula.registered_reply("iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-7", 64) == \
        "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-7 64"
    assert opennebula.monitor_reply(10, 30, 20) == "USED_MB=10\nTOTAL_MB=30\nFREE_MB=20"


def test_typed_fields_of_the_action():
    act = opennebula.decode(action_xml({"PATH": "/img", "SIZE": "64", "FSTYPE": "ext4"}, {"MD5": "ab", "X": "y"},
                                       {"HOST": "tgt2", "TIMEOUT": "1"}), "7")
    assert (act.path, act.size_mb, act.fstype, act.image_id) == ("/img", 64, "ext4", 7)
    assert act.checksums == {"md5": "ab", "sha1": ""}
    cfg = config.load(template=act.datastore, env={})  # only what a datastore template may set
    assert (cfg.host, cfg.timeout) == ("tgt2", 60)
    for size in ("0", "-1", "8;x", "1e3"):
        with pytest.raises(InvalidInput, match="IMAGE/SIZE must be a positive number of MB"):
            opennebula.decode(action_xml({"SIZE": size}), "7").size_mb
