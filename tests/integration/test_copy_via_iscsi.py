"""COPY_VIA=iscsi: cp writes the image from this machine through the target's
own portal with qemu-img (libiscsi), against the real tgtd, the target
admitting this machine for the copy only. A qemu-img wrapper logs its
arguments, to tell which way the data went."""
import os

import pytest

from oneiscsi import datastore, portalcopy, source
from oneiscsi.run import Runner
from support.commands import quiet
from support.driver import action_xml, random_image, remote
from support.recording import make_config

MIB = 1024 * 1024
IQN = "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-{}"
HOST_NAME = "iqn.1993-08.org.debian:01:somehost"  # the only initiator the datastore allows


@pytest.fixture
def qemu_img_log(tmp_path, monkeypatch):
    log = tmp_path / "qemu-img.log"
    wrapper = tmp_path / "qemu-img"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec qemu-img "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("ONE_ISCSI_QEMU_IMG", str(wrapper))
    return log


def datastore_template(tmp_path, tgtd, via, **more):
    return {"BACKEND": "file", "POOL_DIR": str(tmp_path / "pool"), "HOST": "localhost", "VG_NAME": "vg-one",
            "COPY_VIA": via, "COPY_PORTAL": f"127.0.0.1:{tgtd.port}", **more}


def acl(tgtd) -> str:
    return quiet(["tgtadm", "-C", str(tgtd.control), "--op", "show", "--mode", "target"]).stdout


@pytest.mark.parametrize("chap", [False, True])
def test_cp_through_the_portal_admits_this_machine_for_the_copy_only(tgtd, tmp_path, qemu_img_log, chap):
    image = random_image(tmp_path / "img.raw", 3 * MIB + 5)
    with open(image, "r+b") as data:  # a hole of zeros in the middle
        data.seek(MIB)
        data.write(bytes(MIB))
    more = {"INITIATORS": HOST_NAME, **({"CHAP_USER": "copyuser", "CHAP_PASSWORD": "secretpass12"} if chap else {})}
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, datastore_template(tmp_path, tgtd, "iscsi",
                                                                                               **more)), "7")
    assert (done.returncode, done.stdout) == (0, f"{IQN.format(7)} 4\n"), done.stderr
    backing = tmp_path / "pool" / "vg-one" / "lv-one-7"
    assert backing.read_bytes() == image.read_bytes() + bytes(MIB - 5)
    calls = qemu_img_log.read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("convert -n -W --target-is-zero")
    assert f"portal=127.0.0.1:{tgtd.port},target={IQN.format(7)},lun=1,initiator-name=" in calls[0]
    assert ("user=copyuser,password-secret=chap" in calls[0]) == chap and "secretpass12" not in calls[0]
    shown = acl(tgtd)
    assert HOST_NAME in shown and portalcopy.COPY_NAME_PREFIX not in shown  # the copy's own name is gone


def test_auto_falls_back_to_ssh_when_the_portal_does_not_answer(tgtd, tmp_path, qemu_img_log):
    image = random_image(tmp_path / "img.raw", MIB)
    template = {**datastore_template(tmp_path, tgtd, "auto"), "COPY_PORTAL": "127.0.0.1:1"}
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, template), "8")
    assert (done.returncode, done.stdout) == (0, f"{IQN.format(8)} 1\n"), done.stderr
    assert not qemu_img_log.exists()
    assert (tmp_path / "pool" / "vg-one" / "lv-one-8").read_bytes() == image.read_bytes()


def test_auto_takes_the_portal_when_it_answers(tgtd, tmp_path, qemu_img_log):
    image = random_image(tmp_path / "img.raw", MIB)
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, datastore_template(tmp_path, tgtd, "auto")),
                  "9")
    assert done.returncode == 0, done.stderr
    assert qemu_img_log.read_text().startswith("convert ")
    assert (tmp_path / "pool" / "vg-one" / "lv-one-9").read_bytes() == image.read_bytes()


def test_a_device_with_old_data_is_zeroed_before_the_copy(tgtd, tmp_path, monkeypatch):
    """What cp does on an LV (it may hold an older volume's data), on a file
    LUN full of old data: no stale byte survives, under zero blocks or past
    the image's end."""
    lun = tmp_path / "lun"
    lun.write_bytes(b"\xa5" * (4 * MIB))
    iqn = IQN.format(10)
    for args in (["--op", "new", "--mode", "target", "--tid", "10", "-T", iqn],
                 ["--op", "new", "--mode", "logicalunit", "--tid", "10", "--lun", "1", "-b", str(lun)],
                 ["--op", "bind", "--mode", "target", "--tid", "10", "-I", "ALL"]):
        assert tgtd.tgtadm("--lld", "iscsi", *args).returncode == 0
    image = tmp_path / "img.raw"
    image.write_bytes(os.urandom(1000) + bytes(2 * MIB) + b"end")
    cfg = make_config(HOST="localhost", SUDO="", COPY_PORTAL=f"127.0.0.1:{tgtd.port}", **{
        key.removeprefix("ONE_ISCSI_"): value for key, value in tgtd.env.items()})
    server = Runner("localhost", cfg)
    with source.inspect(str(image), server, lambda real: None) as opened, server.session() as session:
        datastore.write_through_portal(opened, session, server, 10, iqn, str(lun), source.Digests({}), True)
    assert lun.read_bytes() == image.read_bytes() + bytes(4 * MIB - image.stat().st_size)


def test_a_failed_copy_takes_everything_back(tgtd, tmp_path, monkeypatch):
    image = random_image(tmp_path / "img.raw", MIB)
    failing = tmp_path / "qemu-img"
    failing.write_text("#!/bin/sh\necho 'qemu-img: iSCSI: Failed to connect to LUN' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("ONE_ISCSI_QEMU_IMG", str(failing))
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {},
                                                datastore_template(tmp_path, tgtd, "iscsi")), "11")
    assert done.returncode != 0 and "Failed to connect to LUN" in done.stderr
    assert IQN.format(11) not in acl(tgtd)
    assert not (tmp_path / "pool" / "vg-one" / "lv-one-11").exists()
