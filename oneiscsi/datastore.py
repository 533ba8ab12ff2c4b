"""Datastore actions: cp, mkfs, rm, stat, monitor.

An action is a short sequence of named steps. Each step that creates
something has an undo; a failure runs the undos of the steps already done, in
reverse order, and reports the step and host that failed.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Optional, Sequence, TypeVar

from . import iqn as names
from . import lvm, opennebula, source, storage, tgt, tgtconf, transfer
from .config import Config
from .errors import InvalidInput, OneIscsiError
from .opennebula import DriverAction
from .run import CommandError, Runner, Session
from .targets import TargetServer

BUILTIN_RESTRICTED = ("/var/lib/one", "/etc/one")
FILESYSTEMS = {
    "ext2": ["-F"], "ext3": ["-F"], "ext4": ["-F"], "ntfs": ["-F", "-Q"],
    "reiserfs": ["-f", "-q"], "jfs": ["-q"], "swap": None, "raw": None,
}
DEFAULT_FSTYPE = "ext3"
T = TypeVar("T")


class StepFailed(OneIscsiError):
    """A step of an action failed; what it had done is rolled back."""


class Undo:
    """What to run to take back the steps done so far; run in reverse order
    when a step fails, each command on its own, in a session of its own."""

    def __init__(self, runner: Runner, action: str):
        self.runner = runner
        self.action = action
        self.commands: list[list[str]] = []

    def push(self, *commands: list[str]) -> None:
        self.commands.extend(commands)

    def step(self, name: str, work: Callable[[], T]) -> T:
        try:
            return work()
        except Exception as err:  # whatever failed, what was made must go
            self.rollback()
            detail = err if isinstance(err, OneIscsiError) else f"{type(err).__name__}: {err}"
            raise StepFailed(f"{name} failed on {self.runner.host}: {detail}") from None

    def rollback(self) -> None:
        commands, self.commands = list(reversed(self.commands)), []
        if not commands:
            return
        with self.runner.session() as session:
            for command in commands:  # one failing undo must not stop the rest
                try:
                    session.run(command)
                except CommandError as err:
                    opennebula.log_error(self.action, f"rollback: {err}")


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


def _spec(target: names.TargetName, volume: storage.Volume, cfg: Config) -> tgtconf.TargetSpec:
    return tgtconf.TargetSpec(target.iqn, (volume.device,), cfg.initiators, cfg.chap_user, cfg.chap_password)


@contextmanager
def _locked(server: Runner, undo: Undo) -> Iterator[Session]:
    """A session on the target server holding its lock, opened as a step."""
    session = undo.step("connecting and taking the lock", lambda: Session(server, lock=True))
    try:
        yield session
    finally:
        session.close()


def _create(session: Session, undo: Undo, target: names.TargetName, volume: storage.Volume,
            size_mb: int, make_filesystem: Sequence[list[str]] = ()) -> None:
    """Volume, filesystem, target with its access rules and LUN 1, persistence
    file: under the target server's lock, each step with its undo."""
    for commands, remove in volume.create(size_mb):
        undo.step("creating volume", lambda commands=commands: _run_explained(session, commands, volume.vg))
        undo.push(*remove)
    if make_filesystem:
        undo.step("making the filesystem", lambda: [
            session.run(c, timeout=session.runner.cfg.copy_timeout) for c in make_filesystem])
    server = TargetServer(session)
    spec = _spec(target, volume, server.cfg)
    tid, created = undo.step("creating target", lambda: server.new(target.iqn))
    if not created:
        undo.step("creating target", lambda: server.check_same(spec))
        opennebula.log_info(undo.action, f"target {target.iqn} already exists with TID {tid}: kept")
        return
    undo.push(tgt.delete_target(tid, force=True))
    undo.step("allowing initiators", lambda: server.allow(tid, spec))
    undo.step("adding LUN 1", lambda: server.bind_lun(tid, volume.device))
    undo.push(*tgtconf.remove(tgtconf.path(server.cfg.conf_dir, target.iqn)))
    undo.step("writing the target's config file", lambda: server.save(spec))


def _run_explained(session: Session, commands: Sequence[list[str]], vg: str) -> None:
    try:
        for command in commands:
            session.run(command)
    except CommandError as err:
        err.hint = err.hint or lvm.hint(err.stderr, vg, session.runner.host)
        raise


def _names(act: DriverAction, cfg: Config) -> tuple[names.TargetName, storage.Volume]:
    volume = storage.volume(act.image_id, cfg)
    return names.build(cfg.base_iqn, cfg.host, volume.vg, volume.lv), volume


ProgressFor = Callable[[int], Optional[Callable[[int], None]]]  # image size -> reporter of bytes done


def cp(act: DriverAction, cfg: Config, dry_run: bool = False, progress_for: ProgressFor = lambda size: None) -> str:
    path = act.require("PATH")
    check_allowed(path, cfg)
    target, volume = _names(act, cfg)
    local = Runner("localhost", cfg)
    image = source.inspect(path, local)
    expected = {name: act.image_template.get(name.upper(), "") for name in ("md5", "sha1")}
    server = Runner(cfg.host, cfg, dry_run=dry_run)
    undo = Undo(server, "cp")
    with _locked(server, undo) as session:
        _create(session, undo, target, volume, max(image.size_mb, 1))
    digests = source.Digests(expected)
    # a new file of the file backend is sparse: it reads as zeros already; a
    # new LV may hold the data of old ones
    write = lambda: write_image(image, volume.device, server, local, digests, zero_device=cfg.backend != "file",
                                progress=progress_for(image.size))
    undo.step(f"copying {path} to {volume.device}", write)
    if not dry_run:
        undo.step("checking the image checksum", lambda: digests.check(path))
    return f"{target.iqn} {image.size_mb}"


def write_image(image: source.Image, device: str, server: Runner, local: Runner,
                digests: source.Digests, zero_device: bool = True,
                progress: Optional[Callable[[int], None]] = None) -> None:
    """Stream the image onto the device on the target server (one ssh
    session), flushed to disk; zero blocks are not sent, the device is zeroed
    there first unless zero_device is False. progress, if given, is told the
    bytes read as they go."""
    with source.raw_chunks(image, local) as chunks:
        data = digests.through(chunks) if image.format == "raw" else chunks
        if progress is not None:
            data = _reporting(data, progress)
        writer = transfer.writer_command(device, [server.resolve(c) for c in transfer.commands()],
                                         [server.resolve(c, privileged=False) for c in transfer.commands()])
        server.feed(writer, transfer.records(data, image.size, zero_device))
    if image.format == "qcow2" and digests.hashes:  # the checksums are of the file as registered
        with open(image.path, "rb") as original:
            for _ in digests.through(source.read_chunks(original)):
                pass


def _reporting(chunks: Iterable[bytes], progress: Callable[[int], None]) -> Iterator[bytes]:
    for chunk in chunks:
        progress(len(chunk))
        yield chunk


def copy(path: str, device: str, cfg: Config, dry_run: bool = False,
         progress_for: ProgressFor = lambda size: None) -> int:
    """Write a local image or URL onto an existing device of the target
    server, leaving no stale data under it; returns the bytes written."""
    check_allowed(path, cfg)
    if not device.startswith("/"):
        raise InvalidInput(f"device must be an absolute path, got {device!r}")
    local = Runner("localhost", cfg)
    image = source.inspect(path, local)
    write_image(image, device, Runner(cfg.host, cfg, dry_run=dry_run), local, source.Digests({}),
                progress=progress_for(image.size))
    return image.size


def mkfs(act: DriverAction, cfg: Config, dry_run: bool = False) -> str:
    fstype = (act.image.get("FSTYPE") or DEFAULT_FSTYPE).strip()
    if fstype not in FILESYSTEMS and fstype != "save_as":
        raise InvalidInput(f"unsupported FSTYPE {fstype!r} (one of {', '.join(FILESYSTEMS)}, save_as)")
    size = act.require("SIZE")
    if not (size.isascii() and size.isdigit()) or int(size) < 1:
        raise InvalidInput(f"IMAGE/SIZE must be a positive number of MB, got {size!r}")
    target, volume = _names(act, cfg)
    if fstype == "save_as":  # OpenNebula fills the image later: nothing to create
        return f"{target.iqn} {size}"
    server = Runner(cfg.host, cfg, dry_run=dry_run)
    undo = Undo(server, "mkfs")
    with _locked(server, undo) as session:
        _create(session, undo, target, volume, int(size), mkfs_commands(fstype, volume.device))
    return f"{target.iqn} {size}"


def mkfs_commands(fstype: str, device: str) -> list[list[str]]:
    if fstype == "raw":
        return []
    if fstype == "swap":
        return [["mkswap", device]]
    return [["mkfs", "-t", fstype, *FILESYSTEMS[fstype], device]]


def rm(act: DriverAction, cfg: Config, dry_run: bool = False) -> list[str]:
    """Delete the image's target, its config file and its volume; returns INFO lines."""
    target = names.parse(act.require("SOURCE"))
    if (target.vg, target.lv) != (cfg.vg_name, storage.lv_name(act.image_id)):
        raise InvalidInput(f"SOURCE {target.iqn} is not image {act.image_id} of volume group {cfg.vg_name}")
    volume = storage.volume_named(target.vg, target.lv, cfg)
    info = []
    with Runner(cfg.host, cfg, dry_run=dry_run).session() as session:
        server = TargetServer(session)
        found = server.find(target.iqn)
        if found is None:
            info.append(f"no target {target.iqn} on {server.host}: already deleted")
        elif found.sessions:
            raise OneIscsiError(f"target {target.iqn} on {server.host} is in use by "
                                f"{', '.join(s.initiator for s in found.sessions)}: nothing removed")
        else:
            server.delete(found.tid)
        server.forget(target.iqn)
        try:
            for command in volume.remove():
                session.run(command)
        except CommandError as err:
            if "Failed to find" not in err.stderr:
                raise OneIscsiError(f"removing {volume.device} failed on {server.host}: {err}") from None
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
