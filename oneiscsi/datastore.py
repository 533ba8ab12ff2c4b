"""Datastore actions: cp, mkfs, rm, stat, monitor.

An action is a short sequence of named steps. Each step that creates
something has an undo; a failure runs the undos of the steps already done, in
reverse order, and reports the step and host that failed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

from . import iqn as names
from . import opennebula, source, storage, tgt
from .config import Config
from .errors import InvalidInput, OneIscsiError
from .opennebula import DriverAction
from .run import CommandError, Runner
from .targets import TargetServer

BUILTIN_RESTRICTED = ("/var/lib/one", "/etc/one")
FILESYSTEMS = {
    "ext2": ["-F"], "ext3": ["-F"], "ext4": ["-F"], "ntfs": ["-F"],
    "reiserfs": ["-f", "-q"], "jfs": ["-q"], "swap": None, "raw": None,
}
DEFAULT_FSTYPE = "ext3"


class StepFailed(OneIscsiError):
    """A step of an action failed; what it had done is rolled back."""


@dataclass
class Step:
    name: str
    commands: list[list[str]]
    undo: list[list[str]] = field(default_factory=list)


@dataclass
class Undo:
    """Undo commands of the steps done so far, run in reverse on failure."""
    runner: Runner
    action: str
    done: list[Step] = field(default_factory=list)

    def run_steps(self, steps: Sequence[Step]) -> None:
        """All steps in one session; on failure undo and raise StepFailed."""
        commands = [command for step in steps for command in step.commands]
        owner = [step for step in steps for _ in step.commands]
        try:
            self.runner.run_all(commands)
        except CommandError as err:
            failed = owner[_index(commands, err.argv)]
            self.done.extend(steps[:steps.index(failed)])
            self.fail(failed.name, err)
        self.done.extend(steps)

    def call(self, name: str, work: Callable[[], None]) -> None:
        try:
            work()
        except OneIscsiError as err:
            self.fail(name, err)

    def fail(self, name: str, err: Exception) -> None:
        self.rollback()
        raise StepFailed(f"{name} failed on {self.runner.host}: {err}") from None

    def rollback(self) -> None:
        commands = [command for step in reversed(self.done) for command in reversed(step.undo)]
        self.done.clear()
        if not commands:
            return
        for command in commands:  # each on its own: one failing undo must not stop the rest
            try:
                self.runner.run(command)
            except CommandError as err:
                opennebula.log_error(self.action, f"rollback: {err}")


def _index(commands: list[list[str]], argv: list[str]) -> int:
    return next((i for i, command in enumerate(commands) if command == argv), len(commands) - 1)


def check_allowed(path: str, cfg: Config) -> None:
    """Refuse images in restricted directories, judged on the real path with
    whole path components; SAFE_DIRS re-allow."""
    if source.is_url(path):
        return
    home = os.path.expanduser("~")
    restricted = [*BUILTIN_RESTRICTED, *([home] if home not in ("/", "~") else []), *cfg.restricted_dirs]
    real = os.path.realpath(path)
    deepest_restricted = _deepest_containing(real, restricted)
    if deepest_restricted > _deepest_containing(real, cfg.safe_dirs):
        raise InvalidInput(f"Not allowed to copy image file {path}")


def _deepest_containing(path: str, directories: Sequence[str]) -> int:
    """Depth of the deepest directory that contains path, -1 if none does."""
    depth = -1
    for directory in directories:
        real = os.path.realpath(directory)
        if path == real or path.startswith(real.rstrip("/") + "/"):
            depth = max(depth, real.rstrip("/").count("/"))
    return depth


def _export_steps(server: TargetServer, target: names.TargetName, volume: storage.Volume,
                  size_mb: int, extra: Sequence[Step] = ()) -> tuple[int, list[Step]]:
    existing = server.list()
    found = tgt.find(existing, target.iqn)
    if found is not None:
        raise OneIscsiError(f"target {target.iqn} already exists on {server.host} with TID {found.tid}")
    tid = tgt.lowest_free_tid(existing, server.runner.cfg.base_tid)
    return tid, [
        *(Step("creating volume", commands, undo) for commands, undo in volume.create(size_mb)),
        *extra,
        Step("creating target", [tgt.new_target(tid, target.iqn)], [tgt.delete_target(tid, force=True)]),
        Step("allowing initiators", [tgt.bind_all(tid)]),
        Step("adding LUN 1", [tgt.new_lun(tid, volume.device)]),
    ]


def _names(act: DriverAction, cfg: Config) -> tuple[names.TargetName, storage.Volume]:
    volume = storage.volume(act.image_id, cfg)
    return names.build(cfg.base_iqn, cfg.host, volume.vg, volume.lv), volume


def copy_command(device: str) -> list[str]:
    return ["dd", f"of={device}", "bs=4M", "iflag=fullblock", "conv=notrunc,fsync", "status=none"]


def cp(act: DriverAction, cfg: Config, dry_run: bool = False) -> str:
    path = act.require("PATH")
    check_allowed(path, cfg)
    target, volume = _names(act, cfg)
    local = Runner("localhost", cfg)
    image = source.inspect(path, local)
    expected = {name: opennebula.optional(act.image_template, name.upper()) or "" for name in ("md5", "sha1")}
    server = TargetServer(Runner(cfg.host, cfg, dry_run=dry_run))
    tid, steps = _export_steps(server, target, volume, max(image.size_mb, 1))
    undo = Undo(server.runner, "cp")
    undo.run_steps(steps)
    digests = source.Digests(expected)

    def copy() -> None:
        with source.raw_chunks(image, local) as chunks:
            server.runner.feed(copy_command(volume.device),
                               digests.through(chunks) if image.format == "raw" else chunks)
        if image.format == "qcow2" and digests.hashes:
            with open(path, "rb") as original:
                for _ in digests.through(source.read_chunks(original)):
                    pass

    undo.call(f"copying {path} to {volume.device}", copy)
    if not dry_run:
        undo.call("checking the image checksum", lambda: digests.check(path))
    return f"{target.iqn} {image.size_mb}"


def mkfs(act: DriverAction, cfg: Config, dry_run: bool = False) -> str:
    fstype = (act.image.get("FSTYPE") or DEFAULT_FSTYPE).strip()
    if fstype not in FILESYSTEMS and fstype != "save_as":
        raise InvalidInput(f"unsupported FSTYPE {fstype!r} (one of {', '.join(FILESYSTEMS)}, save_as)")
    size = act.require("SIZE")
    if not size.isdigit() or int(size) < 1:
        raise InvalidInput(f"IMAGE/SIZE must be a positive number of MB, got {size!r}")
    target, volume = _names(act, cfg)
    if fstype == "save_as":  # OpenNebula fills the image later: nothing to create
        return f"{target.iqn} {size}"
    server = TargetServer(Runner(cfg.host, cfg, dry_run=dry_run))
    make = mkfs_commands(fstype, volume.device)
    _, steps = _export_steps(server, target, volume, int(size),
                             [Step(f"making a {fstype} filesystem", make)] if make else [])
    Undo(server.runner, "mkfs").run_steps(steps)
    return f"{target.iqn} {size}"


def mkfs_commands(fstype: str, device: str) -> list[list[str]]:
    if fstype == "raw":
        return []
    if fstype == "swap":
        return [["mkswap", device]]
    return [["mkfs", "-t", fstype, *FILESYSTEMS[fstype], device]]


def rm(act: DriverAction, cfg: Config, dry_run: bool = False) -> list[str]:
    """Delete the image's target and volume; returns INFO lines."""
    target = names.parse(act.require("SOURCE"))
    server = TargetServer(Runner(cfg.host, cfg, dry_run=dry_run))
    volume = storage.volume_named(target.vg, target.lv, cfg)
    found = tgt.find(server.list(), target.iqn)
    info = []
    commands = []
    if found is None:
        info.append(f"no target {target.iqn} on {server.host}: already deleted")
    elif found.sessions:
        raise OneIscsiError(f"target {target.iqn} on {server.host} is in use by "
                            f"{', '.join(s.initiator for s in found.sessions)}: nothing removed")
    else:
        commands.append(tgt.delete_target(found.tid))
    commands.extend(volume.remove())
    try:
        server.runner.run_all(commands)
    except CommandError as err:
        if err.argv not in volume.remove() or "Failed to find" not in err.stderr:
            raise OneIscsiError(f"removing {target.iqn} failed on {server.host}: {err}") from None
        info.append(f"no volume {volume.device} on {server.host}: already removed")
    return info


def stat(act: DriverAction, cfg: Config) -> int:
    path = act.require("PATH")
    check_allowed(path, cfg)
    return source.inspect(path, Runner("localhost", cfg)).size_mb


def monitor(cfg: Config) -> str:
    output = Runner(cfg.host, cfg).run_all(storage.usage(cfg), query=True)
    total, free = storage.parse_usage(cfg.backend, output)
    return f"USED_MB={total - free}\nTOTAL_MB={total}\nFREE_MB={free}"
