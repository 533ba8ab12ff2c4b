"""LVM2: builders of lvcreate/lvremove/vgs commands and their parsers. Pure."""
from __future__ import annotations

from typing import Optional

from .command import Command, command
from .errors import CommandError, NotFound
from .units import MIB


def create(vg: str, lv: str, size_mb: int) -> Command:
    # --yes -W y: wipe old signatures on the extents instead of asking (stdin is not a terminal)
    return command("lvcreate", "--yes", "-W", "y", "-L", f"{size_mb}M", "-n", lv, vg, privileged=True,
                   explain=lambda err: _explain_create(err, vg))


def _explain_create(err: CommandError, vg: str) -> Optional[Exception]:
    if f'Volume group "{vg}" not found' in err.stderr:
        return err.with_hint(f"volume group {vg} does not exist on {err.host}: create it (vgcreate {vg} DEVICE), "
                             "or set VG_NAME")
    if "Insufficient free" in err.stderr:
        return err.with_hint(f"volume group {vg} on {err.host} is full")
    return None


def remove(vg: str, lv: str) -> Command:
    """Fails with NotFound when there is no such volume."""
    return command("lvremove", "-f", f"{vg}/{lv}", privileged=True,
                   explain=lambda err: NotFound(f"no volume /dev/{vg}/{lv} on {err.host}")
                   if "Failed to find" in err.stderr else None)


def size(vg: str, lv: str) -> Command:
    """Prints the volume's size in bytes; NotFound when there is no such volume."""
    return command("lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size", f"{vg}/{lv}",
                   privileged=True, query=True,
                   explain=lambda err: NotFound(f"no volume /dev/{vg}/{lv} on {err.host}")
                   if "Failed to find" in err.stderr else None)


def extend(vg: str, lv: str, size_mb: int) -> Command:
    return command("lvextend", "-L", f"{size_mb}M", f"{vg}/{lv}", privileged=True,
                   explain=lambda err: _explain_create(err, vg))


def vg_usage(vg: str) -> Command:
    return command("vgs", "--noheadings", "--units", "b", "--nosuffix", "--separator", ":",
                   "-o", "vg_size,vg_free", vg, privileged=True, query=True,
                   explain=lambda err: _explain_create(err, vg))


def parse_vg_usage(text: str) -> tuple[int, int]:
    """(total, free) in MiB from `vgs ... -o vg_size,vg_free`."""
    size, free = (int(field) for field in text.strip().split(":"))
    return size // MIB, free // MIB


def volumes(vg: str) -> Command:
    """Prints every volume of the group with its size in bytes (parse_volumes)."""
    return command("lvs", "--noheadings", "--units", "b", "--nosuffix", "--separator", ":",
                   "-o", "lv_name,lv_size", vg, privileged=True, query=True,
                   explain=lambda err: _explain_create(err, vg))


def parse_volumes(text: str) -> dict[str, int]:
    """{volume name: size in bytes} from the output of volumes()."""
    found = {}
    for line in text.splitlines():
        name, _, size = line.strip().partition(":")
        if name:
            found[name] = int(size)
    return found
