"""LVM2: builders of lvcreate/lvremove/vgs command lines and their parsers. Pure."""
from __future__ import annotations

MIB = 1024 * 1024
MISSING_LV_RC = 5  # "Failed to find logical volume"


def create(vg: str, lv: str, size_mb: int) -> list[str]:
    # --yes -W y: wipe old signatures on the extents instead of asking (stdin is not a terminal)
    return ["lvcreate", "--yes", "-W", "y", "-L", f"{size_mb}M", "-n", lv, vg]


def remove(vg: str, lv: str) -> list[str]:
    return ["lvremove", "-f", f"{vg}/{lv}"]


def vg_usage(vg: str) -> list[str]:
    return ["vgs", "--noheadings", "--units", "b", "--nosuffix", "--separator", ":",
            "-o", "vg_size,vg_free", vg]


def parse_vg_usage(text: str) -> tuple[int, int]:
    """(total, free) in MiB from `vgs ... -o vg_size,vg_free`."""
    size, free = (int(field) for field in text.strip().split(":"))
    return size // MIB, free // MIB


def hint(stderr: str, vg: str, host: str) -> str:
    """A hint for a failed lvcreate, when the fix is obvious."""
    if f'Volume group "{vg}" not found' in stderr:
        return f"volume group {vg} does not exist on {host}: create it, or set VG_NAME"
    if "Insufficient free" in stderr:
        return f"volume group {vg} on {host} is full"
    return ""
