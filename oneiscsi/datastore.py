"""Datastore actions: cp, mkfs, rm, stat, monitor, and copy (by hand).

An action is a short sequence of named steps run through an Undo: each step
that creates something pushes its undo; a failure takes back the steps done,
in reverse order, and reports the step and host that failed. Actions are
given their Runners (the target server's, this machine's) and return plain
values: the OpenNebula protocol is not their business.
"""
from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence

from . import imagewriter, names, source, storage, tgt, tgtconf
from .command import Command, command
from .config import Config
from .errors import Interrupted, InvalidInput, NotFound, OneIscsiError
from .run import Runner, Session
from .targets import TargetServer
from .undo import Undo
from .units import MIB, whole_mib

SYSTEM_RESTRICTED = ("/var/lib/one", "/etc/one")  # oned's state and secrets (ONE_LOCATION: its var, etc)
FILESYSTEMS = {
    "ext2": ["-F"], "ext3": ["-F"], "ext4": ["-F"], "ntfs": ["-F", "-Q"],
    "reiserfs": ["-f", "-q"], "jfs": ["-q"], "swap": None, "raw": None,
}
SAVE_AS = "save_as"

ProgressFor = Callable[[int], Optional[Callable[[int], None]]]  # image size -> reporter of bytes done


@dataclass(frozen=True)
class Registered:
    """An image made on the target server: its target name, size and notes."""
    source: str
    size_mb: int
    notes: tuple[str, ...] = ()
    format: str = "raw"  # of the data on the LUN, as the VM reads it


@dataclass(frozen=True)
class Usage:
    total_mb: int
    free_mb: int

    @property
    def used_mb(self) -> int:
        return self.total_mb - self.free_mb


def check_allowed(path: str, cfg: Config, real: Optional[str] = None) -> None:
    """Refuse images in restricted directories, judged on the real path (real:
    that of the file opened, else path resolved now) with whole path
    components; SAFE_DIRS re-allow."""
    if source.is_url(path):
        return
    home = os.path.expanduser("~")
    restricted = [*builtin_restricted(cfg), *([home] if home not in ("/", "~") else []), *cfg.restricted_dirs]
    real = real or os.path.realpath(path)
    deepest_restricted = _deepest_containing(real, restricted)
    if deepest_restricted > _deepest_containing(real, cfg.safe_dirs):
        raise InvalidInput(f"Not allowed to copy image file {path}")


def builtin_restricted(cfg: Config) -> tuple[str, ...]:
    if cfg.one_location:
        return (f"{cfg.one_location}/var", f"{cfg.one_location}/etc")
    return SYSTEM_RESTRICTED


def _deepest_containing(path: str, directories: Sequence[str]) -> int:
    """Depth of the deepest directory that contains path, -1 if none does."""
    depth = -1
    for directory in directories:
        real = os.path.realpath(directory)
        if path == real or path.startswith(real.rstrip("/") + "/"):
            depth = max(depth, real.rstrip("/").count("/"))
    return depth


def _inspect(path: str, cfg: Config, local: Runner, keep_qcow2: bool = False) -> source.Image:
    """The image at path, opened once and judged again by the file opened: a
    name swapped for a link after the check by name changes nothing."""
    return source.inspect(path, local, lambda real: check_allowed(path, cfg, real), keep_qcow2)


def _names(image_id: int, cfg: Config) -> tuple[names.TargetName, storage.Volume]:
    volume = storage.volume(image_id, cfg)
    return names.build(cfg.base_iqn, cfg.host, volume.vg, volume.lv), volume


def image_lock(cfg: Config, volume: storage.Volume) -> str:
    """The lock file of one image on the target server, held by cp, mkfs and
    rm for as long as they work on it: one image, one owner at a time. Never
    removed (a lock file removed while someone waits on it would let two in)."""
    return f"{cfg.lock_file}.{volume.vg}.{volume.lv}"


@contextmanager
def _owning(server: Runner, undo: Undo, volume: storage.Volume) -> Iterator[Session]:
    """A session on the target server holding the image's lock to its end,
    and LOCK_FILE until release_lock(); opened as a step."""
    with ExitStack() as stack:
        yield undo.step("connecting and taking the lock", lambda: stack.enter_context(
            server.session(lock=True, hold=[image_lock(server.cfg, volume)])))


def _create(session: Session, server: Runner, undo: Undo, target: names.TargetName, volume: storage.Volume,
            size_mb: int, make_filesystem: Sequence[Command] = (),
            spec: Optional[tgtconf.TargetSpec] = None) -> tuple[str, ...]:
    """Volume, filesystem, target with its access rules and LUN 1, persistence
    file, in a session holding the target server's lock, each step with its
    undo. spec: the target's access rules (default: the configuration's).
    Returns notes."""
    cfg = server.cfg
    for commands, remove in volume.create(size_mb):
        undo.step("creating volume", lambda commands=commands: [session.run(c) for c in commands])
        undo.push_commands(server, remove)
    if make_filesystem:
        undo.step("making the filesystem", lambda: [
            session.run(c, timeout=cfg.copy_timeout) for c in make_filesystem])
    targets = TargetServer(session)
    spec = spec or tgtconf.TargetSpec(target.iqn, (volume.device,), cfg.initiators, cfg.chap_user,
                                      cfg.chap_password)
    tid, created = undo.step("creating target", lambda: targets.new(target.iqn))
    if not created and undo.step("creating target", lambda: targets.delete_if_empty(target.iqn)):
        tid, created = undo.step("creating target", lambda: targets.new(target.iqn))
    if not created:
        undo.step("creating target", lambda: targets.check_same(spec))
        return (f"target {target.iqn} already exists with TID {tid}: kept",)
    undo.push_commands(server, [tgt.delete_target(tid, force=True)])
    undo.step("allowing initiators", lambda: targets.allow(tid, spec))
    undo.step("adding LUN 1", lambda: targets.bind_lun(tid, volume.device))
    undo.push_commands(server, [tgtconf.remove(tgtconf.path(cfg.conf_dir, target.iqn))])
    undo.step("writing the target's config file", lambda: targets.save(spec))
    return ()


def cp(path: str, image_id: int, cfg: Config, server: Runner, local: Runner,
       checksums: Optional[Mapping[str, str]] = None, progress_for: ProgressFor = lambda size: None,
       keep_qcow2: bool = False) -> Registered:
    """Register the image at path (file or URL): volume, target, data.
    checksums: expected hex digests by hashlib name (md5, sha1). keep_qcow2:
    a qcow2 file is copied as it is (the VM reads qcow2), else as raw data."""
    check_allowed(path, cfg)
    target, volume = _names(image_id, cfg)
    undo = Undo(server.host)
    with _inspect(path, cfg, local, keep_qcow2) as image, _owning(server, undo, volume) as session:
        notes = _create(session, server, undo, target, volume, max(image.size_mb, 1))
        session.release_lock()  # other images may be made while this one is copied
        digests = source.Digests(checksums or {})
        # a new file of the file backend is sparse: it reads as zeros already; a
        # new LV may hold the data of old ones
        undo.step(f"copying {path} to {volume.device}", lambda: write_image(
            image, volume.device, server, local, digests, zero_device=cfg.backend != "file",
            progress=progress_for(image.size)))
        if not server.dry_run:
            undo.step("checking the image checksum", lambda: digests.check(path))
            undo.step("checking the target", lambda: _check_exported(session, target.iqn, volume.device))
    return Registered(target.iqn, image.size_mb, notes, image.data_format)


def _check_exported(session: Session, iqn: str, device: str) -> None:
    """The target is still there with its LUN (tgtd may have died or been restarted meanwhile)."""
    found = TargetServer(session).find(iqn)
    if found is None or device not in (lun.backing_store for lun in found.luns):
        raise OneIscsiError(f"target {iqn} is no longer exported with LUN {device}")


def write_image(image: source.Image, device: str, server: Runner, local: Runner,
                digests: source.Digests, zero_device: bool = True,
                progress: Optional[Callable[[int], None]] = None) -> None:
    """Stream the image onto the device on the target server (one ssh
    session), flushed to disk; zero blocks are not sent, the device is zeroed
    there first unless zero_device is False. progress, if given, is told the
    bytes read as they go."""
    tools = imagewriter.tools()
    writer = imagewriter.writer(device, [server.resolve(tool) for tool in tools],
                                [server.resolve(tool.but(privileged=False)) for tool in tools])
    if server.dry_run:  # the writer is only shown: the image is not even opened
        server.feed(writer, ())
        return
    with source.raw_chunks(image, local) as chunks:
        data = digests.through(chunks) if image.format == "raw" else chunks
        if progress is not None:
            data = _reporting(data, progress)
        server.feed(writer, imagewriter.records(data, image.size, zero_device))
    if image.format == "qcow2" and digests.hashes:  # the checksums are of the file as registered
        for _ in digests.through(source.file_chunks(image.fd)):
            pass


def _reporting(chunks: Iterable[bytes], progress: Callable[[int], None]) -> Iterator[bytes]:
    for chunk in chunks:
        progress(len(chunk))
        yield chunk


def copy(path: str, device: str, cfg: Config, server: Runner, local: Runner,
         progress_for: ProgressFor = lambda size: None) -> int:
    """Write a local image or URL onto an existing device of the target
    server, leaving no stale data under it; returns the bytes written."""
    check_allowed(path, cfg)
    if not device.startswith("/"):
        raise InvalidInput(f"device must be an absolute path, got {device!r}")
    with _inspect(path, cfg, local) as image:
        room = int(server.run(imagewriter.device_size(device, server.resolve(command("blockdev", privileged=True)))))
        if image.size > room:
            raise InvalidInput(f"{path} ({image.size} bytes) does not fit on {device} ({room} bytes) on "
                               f"{server.host}: nothing written")
        half_written = f"{device} on {server.host} is half written: its old content is gone, write it again"
        try:
            write_image(image, device, server, local, source.Digests({}), progress=progress_for(image.size))
        except Interrupted as err:
            err.during = f"writing {path}; {half_written}"
            raise
        except OneIscsiError as err:
            raise OneIscsiError(f"{err}; {half_written}") from None
    return image.size


def mkfs(image_id: int, size_mb: int, fstype: str, cfg: Config, server: Runner) -> Registered:
    """An empty image of size_mb with a filesystem of fstype (raw: none;
    save_as: none either, a VM's disk is copied into it later)."""
    if fstype not in FILESYSTEMS and fstype != SAVE_AS:
        raise InvalidInput(f"unsupported filesystem {fstype!r} (one of {', '.join(FILESYSTEMS)}, {SAVE_AS})")
    if size_mb < 1:
        raise InvalidInput(f"IMAGE/SIZE must be a positive number of MB, got {size_mb}")
    target, volume = _names(image_id, cfg)
    undo = Undo(server.host)
    with _owning(server, undo, volume) as session:
        notes = _create(session, server, undo, target, volume, size_mb,
                        mkfs_commands(fstype, volume.device) if fstype != SAVE_AS else ())
    return Registered(target.iqn, size_mb, notes)


def clone(source_iqn: str, image_id: int, cfg: Config, server: Runner) -> Registered:
    """A new image holding a copy of the image source_iqn, with the access
    rules of this datastore, made on the target server: nothing crosses to here."""
    original = names.parse(source_iqn)
    if original.host != cfg.host:
        raise InvalidInput(f"image {original.iqn} is on target server {original.host}, this datastore's is "
                           f"{cfg.host}: cloned images stay on their target server")
    target, volume = _names(image_id, cfg)
    spec = tgtconf.TargetSpec(target.iqn, (volume.device,), cfg.initiators, cfg.chap_user, cfg.chap_password)
    return copy_image(original, target, spec, cfg, server)


def private_copy(image: names.TargetName, vm_id: int, disk_id: int, cfg: Config, server: Runner) -> Registered:
    """A VM's own copy of a non-persistent image, with the image's access
    rules (the transfer actions know no datastore template)."""
    target = names.build(image.base, image.host, image.vg, storage.private_lv_name(vm_id, disk_id))
    with server.session() as session:
        saved = TargetServer(session).saved(image.iqn)
    device = storage.volume_named(target.vg, target.lv, cfg).device
    spec = tgtconf.TargetSpec(target.iqn, (device,), saved.initiators, saved.chap_user, saved.chap_password)
    return copy_image(image, target, spec, cfg, server)


def copy_image(original: names.TargetName, target: names.TargetName, spec: tgtconf.TargetSpec, cfg: Config,
               server: Runner) -> Registered:
    """Volume and target of target, holding a copy of original's volume."""
    from_volume = storage.volume_named(original.vg, original.lv, cfg)
    volume = storage.volume_named(target.vg, target.lv, cfg)
    undo = Undo(server.host)
    with _owning(server, undo, volume) as session:
        size = undo.step(f"measuring {from_volume.device}", lambda: volume_size(session, from_volume))
        notes = _create(session, server, undo, target, volume, whole_mib(size), spec=spec)
        session.release_lock()
        undo.step(f"copying {from_volume.device} to {volume.device}",
                  lambda: copy_volume(session, from_volume.device, volume))
        if not server.dry_run:
            undo.step("checking the target", lambda: _check_exported(session, target.iqn, volume.device))
    return Registered(target.iqn, whole_mib(size), notes)


def copy_into(from_iqn: str, into_iqn: str, cfg: Config, server: Runner) -> str:
    """Copy the data of one image's volume into another's (save-as), on their
    target server, holding the lock of the image written. Returns a note."""
    origin, into = names.parse(from_iqn), names.parse(into_iqn)
    if origin.host != into.host:
        raise OneIscsiError(f"{into.iqn} is on target server {into.host}, the disk's image {origin.iqn} on "
                            f"{origin.host}: a disk is saved only into an image of its own target server")
    from_volume = storage.volume_named(origin.vg, origin.lv, cfg)
    volume = storage.volume_named(into.vg, into.lv, cfg)
    with server.session(hold=[image_lock(cfg, volume)]) as session:
        if TargetServer(session).find(into.iqn) is None:
            raise NotFound(f"no target {into.iqn} on {server.host}: the image to save into does not exist")
        return session.run(imagewriter.copier(from_volume.device, volume.device, _copier_tools(session),
                                              zero_device=True), timeout=cfg.copy_timeout).strip()


def grow(iqn: str, size_mb: int, cfg: Config, server: Runner) -> str:
    """Grow the image's volume to size_mb and make tgtd report the new size
    (it reads a LUN's size when the LUN is added: the LUN is added again, on
    the target server in one go). Returns a note."""
    target = names.parse(iqn)
    volume = storage.volume_named(target.vg, target.lv, cfg)
    with server.session(hold=[image_lock(cfg, volume)]) as session:
        current = volume_size(session, volume)
        if size_mb * MIB <= current:  # LVM rounds sizes up to whole extents
            return f"{volume.device} already has {whole_mib(current)} MiB: not shrunk"
        targets = TargetServer(session)
        tid = targets.tid_of(target.iqn)
        session.run(volume.grow(size_mb))
        session.run(tgt.readd_lun(tid, volume.device, session.runner.resolve(command("tgtadm", privileged=True))))
    return f"grew {volume.device} from {whole_mib(current)} to {size_mb} MiB"


def volume_size(on, volume: storage.Volume) -> int:
    """The size in bytes of a volume on the target server."""
    return storage.parse_size(on.run(volume.size()))


def copy_volume(session: Session, from_device: str, volume: storage.Volume) -> None:
    """Copy a device into volume on the target server, zero-aware; a new file
    of the file backend reads as zeros already, anything else is zeroed first."""
    session.run(imagewriter.copier(from_device, volume.device, _copier_tools(session),
                                   zero_device=volume.backend != "file"), timeout=session.cfg.copy_timeout)


def _copier_tools(session: Session) -> list[list[str]]:
    return [session.runner.resolve(tool) for tool in imagewriter.copier_tools()]


def mkfs_commands(fstype: str, device: str) -> list[Command]:
    if fstype == "raw":
        return []
    if fstype == "swap":
        return [command("mkswap", device, privileged=True)]
    return [command("mkfs", "-t", fstype, *FILESYSTEMS[fstype], device, privileged=True)]


def rm(iqn: str, image_id: int, cfg: Config, server: Runner) -> list[str]:
    """Delete the image's target, its config file and its volume; returns notes."""
    target = names.parse(iqn)
    expected, _ = _names(image_id, cfg)
    if target != expected:  # another target server's or datastore's: not this volume to remove
        raise InvalidInput(f"SOURCE {target.iqn} is not image {image_id} of this datastore (that is {expected.iqn})")
    return remove(target, cfg, server)


def remove(target: names.TargetName, cfg: Config, server: Runner) -> list[str]:
    """Delete a target, its config file and its volume, unless it is in use;
    already gone is fine. Returns notes."""
    volume = storage.volume_named(target.vg, target.lv, cfg)
    notes = []
    with server.session(hold=[image_lock(cfg, volume)]) as session:  # not while a cp or mkfs of it runs
        targets = TargetServer(session)
        found = targets.find(target.iqn)
        if found is None:
            notes.append(f"no target {target.iqn} on {server.host}: already deleted")
        elif found.sessions:
            raise OneIscsiError(f"target {target.iqn} on {server.host} is in use by "
                                f"{', '.join(found.initiators)}: nothing removed")
        else:
            targets.delete(found.tid)
        targets.forget(target.iqn)
        try:
            for cmd in volume.remove():
                session.run(cmd)
        except NotFound:
            notes.append(f"no volume {volume.device} on {server.host}: already removed")
        except OneIscsiError as err:
            raise OneIscsiError(f"removing {volume.device} failed on {server.host}: {err}") from None
    return notes


def stat(path: str, cfg: Config, local: Runner, keep_qcow2: bool = False) -> int:
    """The size in MiB the image at path will take."""
    check_allowed(path, cfg)
    with _inspect(path, cfg, local, keep_qcow2) as image:
        return image.size_mb


def monitor(cfg: Config, server: Runner) -> Usage:
    total, free = storage.parse_usage(cfg.backend, server.run_all(storage.usage(cfg)))
    return Usage(total, free)
