import re

import pytest

from oneiscsi import config, portalcopy
from oneiscsi.errors import InvalidInput


def test_each_copy_gets_its_own_initiator_name():
    first, second = portalcopy.initiator_name("iqn.2012-02.org.opennebula"), portalcopy.initiator_name("iqn.x")
    assert re.fullmatch(r"iqn\.2012-02\.org\.opennebula:one-iscsi-copy\.[0-9a-f]{16}", first)
    assert second.startswith("iqn.x:one-iscsi-copy.") and first.split(".")[-1] != second.split(".")[-1]


@pytest.mark.parametrize("copy_portal, expected", [("", "tgt1:3260"), ("10.0.0.5", "10.0.0.5:3260"),
                                                   ("portal.example:3261", "portal.example:3261")])
def test_the_portal_is_copy_portal_or_host_and_port(copy_portal, expected):
    assert portalcopy.portal(copy_portal, "tgt1", 3260) == expected


def test_qemu_img_gets_the_lun_and_the_chap_password_only_as_a_file():
    target = portalcopy.target_options("tgt1:3260", "iqn.x:tgt1.vg.lv-one-7", "iqn.x:one-iscsi-copy.1", "user",
                                       "chap")
    assert target == ("driver=iscsi,transport=tcp,portal=tgt1:3260,target=iqn.x:tgt1.vg.lv-one-7,lun=1,"
                      "initiator-name=iqn.x:one-iscsi-copy.1,user=user,password-secret=chap")
    cmd = portalcopy.convert("/proc/1/fd/3", "qcow2", target, "/tmp/secret")
    assert list(cmd.argv) == ["qemu-img", "convert", "-n", "-W", "--target-is-zero", "--object",
                              "secret,id=chap,file=/tmp/secret", "-f", "qcow2", "--target-image-opts", "/proc/1/fd/3",
                              target]
    assert "--object" not in portalcopy.convert("/a", "raw", "t").argv


@pytest.mark.parametrize("key, value", [("COPY_VIA", "nfs"), ("COPY_PORTAL", "host;rm"), ("COPY_PORTAL", "h:99999"),
                                        ("COPY_PORTAL", "h:x")])
def test_copy_settings_are_checked(key, value):
    with pytest.raises(InvalidInput, match=key):
        config.load(env={f"ONE_ISCSI_{key}": value})


def test_copy_settings_accepted():
    cfg = config.load(env={"ONE_ISCSI_COPY_VIA": "auto", "ONE_ISCSI_COPY_PORTAL": "10.1.2.3:3261"})
    assert (cfg.copy_via, cfg.copy_portal) == ("auto", "10.1.2.3:3261")
