"""Where an image lives on the target server: an LVM volume or a sparse file.

Pure: each method returns the Commands that do the work.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Sequence

from . import lvm, names
from .command import Command, command
from .config import Config
from .errors import NotFound
from .units import MIB

_IMAGE_VOLUME = re.compile(r"lv-one-[0-9]+(?:-[0-9]+)?")
_PRIVATE_VOLUME = re.compile(r"lv-one-[0-9]+-[0-9]+")


@dataclass(frozen=True)
class Volume:
    backend: str  # "lvm" or "file"
    vg: str
    lv: str
    pool_dir: str
    umask: int = 0o077

    @property
    def directory(self) -> str:
        return posixpath.join(self.pool_dir, self.vg)

    @property
    def device(self) -> str:
        if self.backend == "file":
            return posixpath.join(self.directory, self.lv)
        return f"/dev/{self.vg}/{self.lv}"

    def create(self, size_mb: int) -> list[tuple[list[Command], list[Command]]]:
        """(commands, undo) pairs: each undo is due once its commands succeeded."""
        # conv=excl: never take over a file that is already there; sized in a step of its own, whose failure
        # removes the file made, while a failed create must not remove another's
        if self.backend == "file":
            made = [command("mkdir", "-p", self.directory, privileged=True),
                    command("dd", f"of={self.device}", "conv=excl", "count=0", "status=none", privileged=True)]
            mode = f"{0o666 & ~self.umask:04o}"
            return [(made, self.remove()),
                    ([command("chmod", mode, self.device, privileged=True),
                      command("truncate", "-s", f"{size_mb}M", self.device, privileged=True)], [])]
        return [([lvm.create(self.vg, self.lv, size_mb)], self.remove())]

    def size(self) -> Command:
        """Prints the volume's size in bytes; NotFound when there is none."""
        if self.backend == "file":
            return command("stat", "-c", "%s", self.device, query=True,
                           explain=lambda err: NotFound(f"no volume {self.device} on {err.host}")
                           if "No such file" in err.stderr else None)
        return lvm.size(self.vg, self.lv)

    def grow(self, size_mb: int) -> Command:
        if self.backend == "file":
            return command("truncate", "-s", f"{size_mb}M", self.device, privileged=True)
        return lvm.extend(self.vg, self.lv, size_mb)

    def remove(self) -> list[Command]:
        """Fails with NotFound when there is no volume (lvm); rm -f of a file never does."""
        if self.backend == "file":
            return [command("rm", "-f", self.device, privileged=True)]
        return [lvm.remove(self.vg, self.lv)]


def usage(cfg: Config) -> list[Command]:
    """Commands that print the size and free space of the image pool."""
    vg = names.validate_part("volume group", cfg.vg_name)
    if cfg.backend == "file":
        directory = posixpath.join(cfg.pool_dir, vg)
        # query: monitor makes the pool directory even under --dry-run, so df can answer
        return [command("mkdir", "-p", directory, privileged=True, query=True),
                command("df", "-B1", "--output=size,avail", directory, query=True)]
    return [lvm.vg_usage(vg)]


def parse_usage(backend: str, text: str) -> tuple[int, int]:
    """(total, free) in MiB from the output of usage()."""
    if backend == "file":
        size, free = (int(field) for field in text.strip().splitlines()[-1].split())
        return size // MIB, free // MIB
    return lvm.parse_vg_usage(text)


def list_volumes(cfg: Config) -> Command:
    """Prints every volume of the pool with its size (parse_volumes): the
    volume group's LVs, or the files of POOL_DIR/VG_NAME; NotFound when that
    directory does not exist."""
    vg = names.validate_part("volume group", cfg.vg_name)
    if cfg.backend == "file":
        directory = posixpath.join(cfg.pool_dir, vg)
        return command("find", "-H", directory, "-maxdepth", "1", "-type", "f", "-printf", "%s %f\\n",
                       query=True, explain=lambda err: NotFound(f"no {directory} on {err.host}")
                       if "No such file" in err.stderr else None)
    return lvm.volumes(vg)


def parse_volumes(backend: str, text: str) -> dict[str, int]:
    """{volume name: size in bytes} from the output of list_volumes()."""
    if backend == "file":
        return {name: int(size) for size, _, name in (line.partition(" ") for line in text.splitlines()) if name}
    return lvm.parse_volumes(text)


def existing(paths: Sequence[str]) -> Command:
    """Prints those of paths that exist (links followed), one a line."""
    return command("stat", "-L", "--printf", "%n\\n", "--", *paths, query=True, accept=[1])


def is_image_volume(name: str) -> bool:
    """A name lv_name() or private_lv_name() makes."""
    return _IMAGE_VOLUME.fullmatch(name) is not None


def lv_name(image_id: int) -> str:
    return f"lv-one-{image_id}"


def is_private_volume(name: str) -> bool:
    """A name private_lv_name() makes."""
    return _PRIVATE_VOLUME.fullmatch(name) is not None


def private_lv_name(vm_id: int, disk_id: int) -> str:
    """The volume of a VM's private copy of a non-persistent image."""
    return f"lv-one-{vm_id}-{disk_id}"


def parse_size(text: str) -> int:
    """Bytes, from the output of Volume.size()."""
    return int(text.strip())


def volume(image_id: int, cfg: Config) -> Volume:
    return volume_named(cfg.vg_name, lv_name(image_id), cfg)


def volume_named(vg: str, lv: str, cfg: Config) -> Volume:
    return Volume(cfg.backend, names.validate_part("volume group", vg),
                  names.validate_part("volume", lv), cfg.pool_dir, cfg.umask)
