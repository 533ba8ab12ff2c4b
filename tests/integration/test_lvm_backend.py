"""Datastore actions with the LVM backend (BACKEND=lvm), through the remote
stubs as OpenNebula calls them.

Real: lvm2 with a volume group on a 256 MiB sparse file behind a loop device,
the session's tgtd, and the data read back over iSCSI with qemu-img.

There is no device-mapper here, so lvcreate needs activation off and
/dev/VG/LV never appears by itself. The wrappers tests/data/lvcreate-mapped
and tests/data/lvremove-mapped (set as ONE_ISCSI_LVCREATE/LVREMOVE) run the
real commands with activation off, and carry data through the LV by mapping
its extent range of the PV onto a loop device of its own, linked at
/dev/VG/LV. So what dd writes to the LV's device lands in the PV's file at the
LV's extents, and tgtd exports that same device.
"""
import hashlib
import os
from pathlib import Path

import pytest

from support.driver import action_xml, error_block, random_image, read_lun, remote
from support.lvm import must
from support.paths import DATA

MIB = 1024 * 1024


def test_cp_writes_the_image_into_the_lv(vg, tgtd, tmp_path):
    image = random_image(tmp_path / "img.raw", 5 * MIB + 123)
    data = image.read_bytes()
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {"MD5": hashlib.md5(data).hexdigest()},
                                                 vg.template), "7")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{vg.iqn(7)} 6\n"
    assert vg.lvs() == {"lv-one-7": 6 * MIB}
    shown = tgtd.tgtadm("--op", "show", "--mode", "target").stdout
    assert f"Backing store path: /dev/{vg.name}/lv-one-7" in shown
    assert read_lun(tgtd, vg.iqn(7), tmp_path / "back.raw") == data + bytes(6 * MIB - len(data))
    assert vg.read("lv-one-7", len(data)) == data


def test_monitor_reports_the_volume_group(vg, tgtd):
    def monitor():
        done = remote("datastore", "monitor", action_xml({}, {}, vg.template), "100")
        assert done.returncode == 0, done.stderr
        values = dict(line.split("=") for line in done.stdout.splitlines())
        assert list(values) == ["USED_MB", "TOTAL_MB", "FREE_MB"]
        return {key: int(value) for key, value in values.items()}

    size = int(must(["vgs", "--noheadings", "--units", "b", "--nosuffix", "-o", "vg_size", vg.name]))
    total = size // MIB
    assert total > 200
    assert monitor() == {"USED_MB": 0, "TOTAL_MB": total, "FREE_MB": total}
    assert remote("datastore", "mkfs", action_xml({"SIZE": "16", "FSTYPE": "raw"}, {}, vg.template),
                  "101").returncode == 0
    assert monitor() == {"USED_MB": 16, "TOTAL_MB": total, "FREE_MB": total - 16}


def test_rm_removes_target_and_lv_and_a_second_rm_is_fine(vg, tgtd, tmp_path):
    image = random_image(tmp_path / "img.raw", MIB)
    assert remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, vg.template), "30").returncode == 0
    assert vg.lvs() == {"lv-one-30": MIB} and len(vg.mapped()) == 1
    rm = action_xml({"SOURCE": vg.iqn(30)}, {}, vg.template)
    first = remote("datastore", "rm", rm, "30")
    assert (first.returncode, first.stdout, first.stderr) == (0, "", "")
    assert tgtd.target_ids() == []
    assert vg.lvs() == {}
    assert vg.mapped() == [] and not os.path.lexists(f"/dev/{vg.name}/lv-one-30")
    second = remote("datastore", "rm", rm, "30")
    assert (second.returncode, second.stdout) == (0, "")
    assert second.stderr == (f"INFO: rm: no target {vg.iqn(30)} on localhost: already deleted\n"
                             f"INFO: rm: no volume /dev/{vg.name}/lv-one-30 on localhost: already removed\n")


@pytest.mark.parametrize("step, key, words", [
    ("creating target", "TGTADM", "--mode target --tid"),
    ("allowing initiators", "TGTADM", "--op bind"),
    ("adding LUN 1", "TGTADM", "--mode logicalunit"),
    ("copying", "DD", "conv=notrunc,nocreat,fsync"),
])
def test_failing_step_of_cp_removes_the_lv(vg, tgtd, tmp_path, monkeypatch, step, key, words):
    """A failing command is configured through ONE_ISCSI_<KEY>."""
    real = {"TGTADM": f"tgtadm -C {tgtd.control}", "DD": "dd"}[key]
    monkeypatch.setenv(f"ONE_ISCSI_{key}", f"{DATA / 'fail-when'} '{words}' {real}")
    image = random_image(tmp_path / "img.raw", MIB)
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, vg.template), "12")
    assert done.returncode == 1
    message = error_block(done.stderr)
    assert message.startswith(step) and "failed on localhost" in message and "injected failure" in message
    assert tgtd.target_ids() == []
    assert vg.lvs() == {}
    assert vg.mapped() == []


def test_existing_lv_is_never_taken_over(vg, tgtd, tmp_path):
    must([str(DATA / "lvcreate-mapped"), "-L", "2M", "-n", "lv-one-13", vg.name])
    device = f"/dev/{vg.name}/lv-one-13"
    Path(device).write_bytes(b"keep me")
    image = random_image(tmp_path / "img.raw", MIB)
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, vg.template), "13")
    assert done.returncode == 1
    assert error_block(done.stderr).startswith("creating volume failed on localhost")
    assert "already exists" in done.stderr
    assert vg.lvs() == {"lv-one-13": 2 * MIB}
    assert Path(device).read_bytes()[:7] == b"keep me"
    assert tgtd.target_ids() == []
