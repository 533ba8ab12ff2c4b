"""A real LVM2 volume group for tests: a sparse file behind a loop device,
1 MiB extents. There is no device-mapper here, so the CLI's lvcreate,
lvextend and lvremove are the wrappers tests/data/lv*-mapped, which run the
real commands with activation off and give each LV a device: its extent
range of the PV mapped onto a loop device of its own, linked at /dev/VG/LV.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .commands import quiet
from .paths import DATA

MIB = 1024 * 1024
NO_ACTIVATION = "global/activation=0"
TOOLS = {"LVCREATE": "lvcreate-mapped", "LVEXTEND": "lvextend-mapped", "LVREMOVE": "lvremove-mapped"}


def must(argv: list[str]) -> str:
    done = quiet(argv)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


@dataclass
class VolumeGroup:
    name: str
    pv: str  # the loop device of the PV
    backing: Path  # the sparse file behind it

    @property
    def env(self) -> dict[str, str]:
        """The driver's settings for this group's wrappers."""
        return {f"ONE_ISCSI_{key}": str(DATA / tool) for key, tool in TOOLS.items()}

    @property
    def template(self) -> dict[str, str]:
        return {"BACKEND": "lvm", "VG_NAME": self.name, "HOST": "localhost"}

    def iqn(self, image_id) -> str:
        return f"iqn.2012-02.org.opennebula:localhost.{self.name}.lv-one-{image_id}"

    def lvs(self) -> dict[str, int]:
        """{LV name: size in bytes} as lvs reports them."""
        out = must(["lvs", "--noheadings", "--units", "b", "--nosuffix", "--separator", ":",
                    "-o", "lv_name,lv_size", self.name])
        return {name: int(size) for name, size in (line.strip().split(":") for line in out.splitlines())}

    def offset(self, lv: str) -> int:
        """Byte offset of the LV's first extent in the PV's file."""
        ranges = must(["lvs", "--noheadings", "-o", "seg_pe_ranges", f"{self.name}/{lv}"]).split()
        assert len(ranges) == 1 and ranges[0].startswith(f"{self.pv}:"), ranges
        first = int(ranges[0].rsplit(":", 1)[1].split("-")[0])
        extent = int(must(["vgs", "--noheadings", "--units", "b", "--nosuffix", "-o", "vg_extent_size",
                           self.name]))
        pe_start = int(must(["pvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "pe_start", self.pv]))
        return pe_start + first * extent

    def read(self, lv: str, length: int) -> bytes:
        """The first length bytes of the LV, read from the PV's file itself."""
        with open(self.backing, "rb") as pv_file:
            pv_file.seek(self.offset(lv))
            return pv_file.read(length)

    def mapped(self) -> list[str]:
        """Loop devices stacked on the PV's loop device (one per LV with a device)."""
        return [line.split(":")[0] for line in must(["losetup", "-j", self.pv]).splitlines()]


@contextmanager
def volume_group(folder: Path, size_mib: int = 256) -> Iterator[VolumeGroup]:
    """A fresh volume group, removed with everything in it, also on failure."""
    name = f"vg-test-{os.getpid()}"
    backing = folder / "pv.img"
    backing.touch()
    os.truncate(backing, size_mib * MIB)
    pv = None
    try:
        pv = must(["losetup", "-f", "--show", str(backing)]).strip()
        group = VolumeGroup(name, pv, backing)
        must(["pvcreate", pv])
        must(["vgcreate", "-s", "1M", name, pv])
        yield group
    finally:
        if pv:
            for device in VolumeGroup(name, pv, backing).mapped():
                quiet(["losetup", "-d", device])
            quiet(["vgremove", "-f", "--config", NO_ACTIVATION, name])
            quiet(["pvremove", "-f", pv])
            quiet(["losetup", "-d", pv])
        shutil.rmtree(f"/dev/{name}", ignore_errors=True)
