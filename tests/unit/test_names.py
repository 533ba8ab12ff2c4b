import pytest

from oneiscsi import names as iqn
from oneiscsi.errors import InvalidInput

BASE = "iqn.2012-02.org.opennebula"


def test_parse_original_example():
    name = iqn.parse(f"{BASE}:iscsitarget.vg-one.lv-one-7")
    assert (name.base, name.host, name.vg, name.lv) == (BASE, "iscsitarget", "vg-one", "lv-one-7")
    assert "device" not in name.as_dict()  # the device depends on BACKEND: storage.py knows it


def test_parse_host_with_dots_splits_on_last_two():
    name = iqn.parse(f"{BASE}:tgt.example.com.vg-one.lv-one-12")
    assert (name.host, name.vg, name.lv) == ("tgt.example.com", "vg-one", "lv-one-12")


def test_parse_ip_address_host():
    assert iqn.parse(f"{BASE}:192.168.0.5.vg.lv-one-1").host == "192.168.0.5"


def test_build_round_trips():
    name = iqn.build(BASE, "tgt.example.com", "vg-one", "lv-one-3")
    assert name.iqn == f"{BASE}:tgt.example.com.vg-one.lv-one-3"
    assert iqn.parse(name.iqn) == name


@pytest.mark.parametrize("bad, reason", [
    ("", "empty"),
    ("eui.02004567A425678D", "form"),
    ("iqn.12-02.org.x:a.b.c", "form"),
    ("iqn.2012-13.org.x:a.b.c", "form"),
    ("iqn.2012-02.org.x:a b.vg.lv", "refuses"),
    ("iqn.2012-02.org.x:a_b.vg.lv", "refuses"),
    ("iqn.2012-02.org.x:a.vg.lv;rm", "refuses"),
    ("iqn.2012-02.org.x:a.vg.lv$(id)", "refuses"),
    ("iqn.2012-02.org.x:ä.vg.lv", "refuses"),
    ("IQN.2012-02.org.x:a.vg.lv", "form"),
    ("iqn.2012-02.org.x:" + "a" * 220, "longer"),
])
def test_validate_refuses(bad, reason):
    with pytest.raises(InvalidInput, match=reason):
        iqn.validate(bad)


def test_validate_accepts_any_valid_target_name():
    assert iqn.validate("iqn.2001-04.com.example:storage.disk2.sys1.xyz")
    assert iqn.validate("iqn.2001-04.com.example")


@pytest.mark.parametrize("bad", [
    f"{BASE}:vg.lv",          # no host
    f"{BASE}:.vg.lv",         # empty host
    f"{BASE}:host..lv",       # empty vg
    f"{BASE}:host.vg.",       # empty lv
    f"{BASE}",                # no target part
    f"{BASE}:-host.vg.lv",    # host starting with '-'
])
def test_parse_refuses_wrong_structure(bad):
    with pytest.raises(InvalidInput):
        iqn.parse(bad)


@pytest.mark.parametrize("host, vg, lv, words", [
    ("tgt", "vg_one", "lv-one-1", "volume group"),
    ("tgt", "vg.one", "lv-one-1", "volume group"),
    ("tgt", "vg-one", "lv one", "volume name"),
    ("tgt", "vg-one", "", "volume name"),
    ("tgt", "-vg", "lv", "volume group"),
    ("my_host", "vg-one", "lv", "host name"),
    ("host;reboot", "vg-one", "lv", "host name"),
    ("", "vg-one", "lv", "host name"),
])
def test_build_refuses_parts_tgtd_would_refuse(host, vg, lv, words):
    with pytest.raises(InvalidInput, match=words):
        iqn.build(BASE, host, vg, lv)


def test_build_refuses_base_with_colon_or_wrong_prefix():
    with pytest.raises(InvalidInput):
        iqn.build("iqn.2012-02.org.x:y", "h", "vg", "lv")
    with pytest.raises(InvalidInput):
        iqn.build("org.opennebula", "h", "vg", "lv")
