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

from . import imagewriter, lio, names, portalcopy, source, storage, tgt, tgtconf, values
from .command import Command, command
from .config import Config
from .errors import CommandError, Interrupted, InvalidInput, NotFound, OneIscsiError
from .run import FileRange, Runner, Session
from .liotargets import ask
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
            spec: Optional[tgtconf.TargetSpec] = None, on_lio: Optional[bool] = None) -> tuple[int, tuple[str, ...]]:
    """Volume, filesystem, target with its access rules and LUN 1, persistence
    file, in a session holding the target server's lock, each step with its
    undo. spec: the target's access rules (default: the configuration's);
    on_lio: made on LIO (default: as TARGET says). Returns the target's TID
    (0 on LIO) and notes."""
    cfg = server.cfg
    spec = spec or tgtconf.TargetSpec(target.iqn, (volume.device,), cfg.initiators, cfg.chap_user,
                                      cfg.chap_password)
    on_lio = cfg.target == "lio" if on_lio is None else on_lio
    export_lio = lio.create(spec, cfg.portal_port, cfg.lock_timeout) \
        if on_lio else None  # refused before anything is made, if LIO cannot have it
    for commands, remove in volume.create(size_mb):
        undo.step("creating volume", lambda commands=commands: [session.run(c) for c in commands])
        undo.push_commands(server, remove)
    if make_filesystem:
        undo.step("making the filesystem", lambda: [
            session.run(c, timeout=cfg.copy_timeout) for c in make_filesystem])
    if export_lio is not None:
        return 0, undo.step("creating target", lambda: _create_lio(session, server, undo, export_lio, spec, volume))
    targets = TargetServer(session)
    tid, created = undo.step("creating target", lambda: targets.new(target.iqn))
    if not created and undo.step("creating target", lambda: targets.delete_if_empty(target.iqn)):
        tid, created = undo.step("creating target", lambda: targets.new(target.iqn))
    if not created:
        undo.step("creating target", lambda: targets.check_same(spec))
        return tid, (f"target {target.iqn} already exists with TID {tid}: kept",)
    undo.push_commands(server, [tgt.delete_target(tid, force=True)])
    undo.step("allowing initiators", lambda: targets.allow(tid, spec))
    undo.step("adding LUN 1", lambda: targets.bind_lun(tid, volume.device))
    undo.push_commands(server, [tgtconf.remove(tgtconf.path(cfg.conf_dir, target.iqn))])
    undo.step("writing the target's config file", lambda: targets.save(spec.with_tid(tid)))
    return tid, ()


def _create_lio(session: Session, server: Runner, undo: Undo, export: Command, spec: tgtconf.TargetSpec,
                volume: storage.Volume) -> tuple[str, ...]:
    """The LIO target of spec, made and saved in one command; its notes. A
    target of that name already there is kept if it exports the volume."""
    answer = ask(session, export)
    if answer.get("exists"):
        found = lio.target(answer["target"])
        if [lun.backing_store for lun in found.luns] != [volume.device]:
            raise OneIscsiError(f"target {spec.iqn} already exists on {server.host} and exports "
                                f"{', '.join(lun.backing_store for lun in found.luns) or 'nothing'}, "
                                f"not {volume.device}: remove it first")
        return (f"target {spec.iqn} already exists: kept",)
    undo.push_commands(server, [lio.delete(spec.iqn, [volume.device], lio.storage_kind(volume.backend),
                                           force=True)])
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
        tid, notes = _create(session, server, undo, target, volume, max(image.size_mb, 1))
        session.release_lock()  # other images may be made while this one is copied
        digests = source.Digests(checksums or {})
        # a new file of the file backend is sparse: it reads as zeros already; a
        # new LV may hold the data of old ones. Once flushed, the target must still be there.
        zero_device, progress = cfg.backend != "file", progress_for(image.size)
        if copy_via(cfg, image, server) == "iscsi":
            undo.step(f"copying {path} to {target.iqn} through its portal", lambda: write_through_portal(
                image, session, local, tid, target.iqn, volume.device, digests, zero_device, progress))
        else:
            check = lio.exported(target.iqn) if cfg.target == "lio" else _exported(tid, target.iqn)
            undo.step(f"copying {path} to {volume.device}", lambda: write_image(
                image, volume.device, session, local, digests, zero_device, progress, check))
        if not server.dry_run:
            undo.step("checking the image checksum", lambda: digests.check(path))
    return Registered(target.iqn, image.size_mb, notes, image.data_format)


def _exported(tid: int, iqn: str) -> Command:
    """Succeeds while tgtd still has the target of TID tid (tgtd may have
    died, or been restarted without it, during a copy)."""
    return command("tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target", "--tid", str(tid),
                   privileged=True, query=True,
                   explain=lambda err: OneIscsiError(f"target {iqn} (TID {tid}) is no longer exported on "
                                                     f"{err.host}: {err.stderr.strip() or 'tgtd is gone'}"))


def _check_exported(session: Session, iqn: str, device: str, on_lio: bool = False) -> None:
    """The target is still there with its LUN (tgtd may have died or been restarted meanwhile)."""
    if on_lio:
        session.run(lio.exported(iqn))
        return
    found = TargetServer(session).find(iqn)
    if found is None or device not in (lun.backing_store for lun in found.luns):
        raise OneIscsiError(f"target {iqn} is no longer exported with LUN {device}")


def write_image(image: source.Image, device: str, session: Session, local: Runner,
                digests: source.Digests, zero_device: bool = True,
                progress: Optional[Callable[[int], None]] = None, check: Optional[Command] = None) -> None:
    """Write the image onto the device on the target server, flushed to disk,
    as the last command of session (its connection carries the data); zero
    blocks are not sent, the device is zeroed there unless zero_device is
    False. A raw file is scanned ahead of the copy and sent by the kernel; on
    this machine the writer reads it itself. progress, if given, is told the
    bytes read as they go. check: a command that must succeed after the flush."""
    server = session.runner
    # the writer reads the file itself only when the file ends where its size says (not a /proc file)
    direct = server.local and image.format == "raw" and image.fd is not None and \
        os.pread(image.fd, 1, image.size) == b""
    writer = _writer(server, device, source.opened(image.fd) if direct else "", check)
    timeout = server.cfg.copy_timeout
    if server.dry_run:  # the writer is only shown: the image is not even read
        session.finish(writer, (), timeout)
        return
    if direct:
        session.finish(writer, imagewriter.local_records(image.size, zero_device), timeout)
        _reporting_all(image.size, progress)
        digests.read(image.fd)
    elif image.format == "raw" and image.fd is not None:
        blocks = source.read_ahead(source.file_blocks(image.fd, digests if digests.hashes else None))
        stream = imagewriter.records(_reporting(blocks, progress), image.size, zero_device, imagewriter.FILE_WINDOW)
        session.finish(writer, (FileRange(image.fd, item.offset, item.length)
                                if isinstance(item, imagewriter.Span) else item for item in stream), timeout)
    else:
        with source.raw_chunks(image, local) as chunks:
            data = digests.through(chunks) if image.format == "raw" else chunks
            blocks = _reporting(imagewriter.chunk_blocks(data), progress)
            session.finish(writer, imagewriter.records(blocks, image.size, zero_device), timeout)
        if image.format == "qcow2":  # the checksums are of the file as registered
            digests.read(image.fd)


def copy_via(cfg: Config, image: source.Image, server: Runner) -> str:
    """ssh or iscsi: how the image's data goes (a URL, and a dry run, over ssh)."""
    if cfg.copy_via == "ssh" or image.fd is None or server.dry_run:
        return "ssh"
    if cfg.copy_via == "iscsi":
        return "iscsi"
    import socket

    host, _, port = portalcopy.portal(cfg.copy_portal, cfg.host, cfg.portal_port).rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=min(cfg.connect_timeout, 2)).close()
    except OSError:
        return "ssh"
    return "iscsi"


def write_through_portal(image: source.Image, session: Session, local: Runner, tid: int, iqn: str, device: str,
                         digests: source.Digests, zero_device: bool,
                         progress: Optional[Callable[[int], None]] = None) -> None:
    """Write the image onto LUN 1 of the target iqn (TID tid; 0 on LIO)
    from here with qemu-img through the target's portal, the target
    admitting this machine for the copy only (on LIO a node ACL, with the
    target's CHAP). qemu-img skips the image's zero blocks (any size), so a
    device that may hold old data is zeroed whole in place first; the
    device is flushed on the target server after the copy."""
    cfg, server = session.cfg, session.runner
    name = portalcopy.initiator_name(cfg.base_iqn)
    admit = "ALL" not in cfg.initiators
    on_lio = cfg.target == "lio"
    if zero_device:
        session.run(_writer(server, device).but(input=f"Z 0 {image.size}\nE {image.size} 1\n"),
                    timeout=cfg.copy_timeout)
    if admit:
        session.run(_admitting(on_lio, tid, iqn, name, cfg, True))
    try:
        with _secret_file(cfg.chap_password if cfg.chap_user else "") as secret, local.session() as here:
            target = portalcopy.target_options(portalcopy.portal(cfg.copy_portal, cfg.host, cfg.portal_port), iqn,
                                               name, cfg.chap_user, "chap")
            here.run(portalcopy.convert(source.opened(image.fd), image.format, target,
                                        secret_file=secret), timeout=cfg.copy_timeout)
    finally:
        if admit:
            session.run(_admitting(on_lio, tid, iqn, name, cfg, False))
    # tgtd wrote through the page cache of the target server: flushed there, then the target checked
    check = lio.exported(iqn) if on_lio else _exported(tid, iqn)
    session.run(_writer(server, device, check=check).but(input=f"E {image.size} 0\n"), timeout=cfg.copy_timeout)
    digests.read(image.fd)
    if progress is not None:
        progress(image.size)


def _admitting(on_lio: bool, tid: int, iqn: str, name: str, cfg: Config, admit: bool) -> Command:
    """The command that lets the initiator name in (admit) or out again."""
    if on_lio:
        return lio.change(iqn, [["allow" if admit else "deny", [name]]], cfg.portal_port, cfg.lock_timeout,
                          persist=False)  # for this copy only: not for a reboot to bring back
    return tgt.bind_initiator_name(tid, name) if admit else tgt.unbind_initiator_name(tid, name)


@contextmanager
def _secret_file(secret: str) -> Iterator[Optional[str]]:
    """A file only we can read holding secret (None without one), removed after."""
    if not secret:
        yield None
        return
    import tempfile

    with tempfile.NamedTemporaryFile("w", prefix="one-iscsi-chap-") as file:  # mode 0600
        file.write(secret)
        file.flush()
        yield file.name


def _writer(server: Runner, device: str, image_file: str = "", check: Optional[Command] = None) -> Command:
    """The image writer of device, as it runs on server; its failure of check is check's own error."""
    tools = imagewriter.tools(shared_device=server.cfg.target == "lio")
    writer = imagewriter.writer(device, [server.resolve(tool) for tool in tools],
                                [server.resolve(tool.but(privileged=False)) for tool in tools],
                                image_file, server.resolve(check) if check else ())
    if check is None or check.explain is None:
        return writer
    return writer.but(explain=lambda err: check.explain(err) if err.rc == imagewriter.CHECK_FAILED_RC else None)


def _reporting(blocks: Iterable[imagewriter.Block],
               progress: Optional[Callable[[int], None]]) -> Iterable[imagewriter.Block]:
    if progress is None:
        return blocks
    return (progress(block[1]) or block for block in blocks)


def _reporting_all(size: int, progress: Optional[Callable[[int], None]]) -> None:
    if progress is not None:
        progress(size)


def copy(path: str, device: str, cfg: Config, server: Runner, local: Runner,
         progress_for: ProgressFor = lambda size: None) -> int:
    """Write a local image or URL onto an existing device of the target
    server, leaving no stale data under it; returns the bytes written."""
    check_allowed(path, cfg)
    if not device.startswith("/"):
        raise InvalidInput(f"device must be an absolute path, got {device!r}")
    with _inspect(path, cfg, local) as image, server.session() as session:
        room = int(session.run(imagewriter.device_size(device, server.resolve(command("blockdev", privileged=True)))))
        if image.size > room:
            raise InvalidInput(f"{path} ({image.size} bytes) does not fit on {device} ({room} bytes) on "
                               f"{server.host}: nothing written")
        half_written = f"{device} on {server.host} is half written: its old content is gone, write it again"
        try:
            write_image(image, device, session, local, source.Digests({}), progress=progress_for(image.size))
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
        _, notes = _create(session, server, undo, target, volume, size_mb,
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
    return copy_image(original, target, lambda session, on_lio: spec, cfg, server, look=False)


def private_copy(image: names.TargetName, vm_id: int, disk_id: int, cfg: Config, server: Runner) -> Registered:
    """A VM's own copy of a non-persistent image, with the image's access
    rules (the transfer actions know no datastore template)."""
    target = names.build(image.base, image.host, image.vg, storage.private_lv_name(vm_id, disk_id))
    device = storage.volume_named(target.vg, target.lv, cfg).device

    def access(session: Session, on_lio: bool) -> tgtconf.TargetSpec:
        rules = lio_rules(session, image.iqn) if on_lio else TargetServer(session).saved(image.iqn)
        return tgtconf.TargetSpec(target.iqn, (device,), rules.initiators, rules.chap_user, rules.chap_password)
    return copy_image(image, target, access, cfg, server)


def copy_image(original: names.TargetName, target: names.TargetName,
               access: Callable[[Session, bool], tgtconf.TargetSpec], cfg: Config, server: Runner,
               look: bool = True) -> Registered:
    """Volume and target of target, holding a copy of original's volume, on
    the target server and the target (tgt or LIO) original is on.
    access(session, on_lio): the new target's access rules. look: find out
    on the server whether original is LIO's (a transfer action's TARGET
    may not be the datastore's); else TARGET says."""
    from_volume = storage.volume_named(original.vg, original.lv, cfg)
    volume = storage.volume_named(target.vg, target.lv, cfg)
    undo = Undo(server.host)
    with _owning(server, undo, volume) as session:
        on_lio = on_lio_target(session, original.iqn, look)
        spec = access(session, on_lio)
        size = undo.step(f"measuring {from_volume.device}", lambda: volume_size(session, from_volume))
        _, notes = _create(session, server, undo, target, volume, whole_mib(size), spec=spec, on_lio=on_lio)
        session.release_lock()
        undo.step(f"copying {from_volume.device} to {volume.device}",
                  lambda: copy_volume(session, from_volume.device, volume, on_lio))
        if not server.dry_run:
            undo.step("checking the target", lambda: _check_exported(session, target.iqn, volume.device, on_lio))
    return Registered(target.iqn, whole_mib(size), notes)


def on_lio_target(session: Session, iqn: str, look: bool = True) -> bool:
    """Whether the target iqn is (or is to be) LIO's. TARGET=lio says so; a
    transfer action gets no datastore template, only iscsi.conf's TARGET,
    so (look) a target that LIO has is LIO's whatever TARGET says."""
    return session.cfg.target == "lio" or (look and lio_has(session, iqn))


def lio_has(session: Session, iqn: str) -> bool:
    """Whether LIO on the session's host has the target iqn."""
    try:
        session.run(lio.has_target(iqn))
    except CommandError:
        return False
    return True


def lio_rules(session: Session, iqn: str) -> tgtconf.TargetSpec:
    """The access rules (initiators, CHAP) of LIO's target iqn, checked by
    the rules every configured value meets before they go into another target."""
    found = ask(session, lio.show(iqn, secrets=True))["target"]
    try:
        initiators = tuple("ALL" if name == "ALL" else values.initiator(name) for name in found["acl"])
        user = values.chap_user(found["chap_user"]) if found["chap_user"] else ""
        password = values.chap_password(found["chap_password"]) if user else ""
    except (ValueError, KeyError, TypeError) as err:  # values' rules raise ValueError
        raise OneIscsiError(f"the access rules of target {iqn} on {session.host} are not one-iscsi's: {err}") from None
    return tgtconf.TargetSpec(iqn, (), initiators, user, password)


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
        on_lio = lio_has(session, into.iqn)
        if not on_lio and (cfg.target == "lio" or TargetServer(session).find(into.iqn) is None):
            raise NotFound(f"no target {into.iqn} on {server.host}: the image to save into does not exist")
        return session.run(imagewriter.copier(from_volume.device, volume.device, _copier_tools(session, on_lio),
                                              zero_device=True), timeout=cfg.copy_timeout).strip()


def grow(iqn: str, size_mb: int, cfg: Config, server: Runner) -> str:
    """Grow the image's volume to size_mb and make the target report the new
    size. tgtd reads a LUN's size when the LUN is added: the LUN is added
    again, on the target server in one go. LIO reads a block device's size
    at each READ CAPACITY, but a file's only when it is exported: refused
    there. Returns a note."""
    target = names.parse(iqn)
    volume = storage.volume_named(target.vg, target.lv, cfg)
    with server.session(hold=[image_lock(cfg, volume)]) as session:
        current = volume_size(session, volume)
        if size_mb * MIB <= current:  # LVM rounds sizes up to whole extents
            return f"{volume.device} already has {whole_mib(current)} MiB: not shrunk"
        if on_lio_target(session, target.iqn):
            if volume.backend == "file":
                raise OneIscsiError(f"{volume.device} on {server.host} is a file LIO exports: LIO takes a file's "
                                    "size when it exports it, so it cannot grow (BACKEND=lvm can)")
            session.run(volume.grow(size_mb))
            return f"grew {volume.device} from {whole_mib(current)} to {size_mb} MiB"
        targets = TargetServer(session)
        tid = targets.tid_of(target.iqn)
        session.run(volume.grow(size_mb))
        session.run(tgt.readd_lun(tid, volume.device, session.runner.resolve(command("tgtadm", privileged=True))))
    return f"grew {volume.device} from {whole_mib(current)} to {size_mb} MiB"


def volume_size(on, volume: storage.Volume) -> int:
    """The size in bytes of a volume on the target server."""
    return storage.parse_size(on.run(volume.size()))


def copy_volume(session: Session, from_device: str, volume: storage.Volume, on_lio: bool = False) -> None:
    """Copy a device into volume on the target server, zero-aware; a new file
    of the file backend reads as zeros already, anything else is zeroed first."""
    session.run(imagewriter.copier(from_device, volume.device, _copier_tools(session, on_lio),
                                   zero_device=volume.backend != "file"), timeout=session.cfg.copy_timeout)


def _copier_tools(session: Session, on_lio: bool) -> list[list[str]]:
    """The writer's tools; on LIO those that write a device LIO holds open."""
    return [session.runner.resolve(tool) for tool in imagewriter.tools(shared_device=on_lio)]


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
    return remove(target, cfg, server, look=False)  # the datastore's template says TARGET


def remove(target: names.TargetName, cfg: Config, server: Runner, look: bool = True) -> list[str]:
    """Delete a target, its config file and its volume, unless it is in use;
    already gone is fine. Returns notes. look: as copy_image's."""
    volume = storage.volume_named(target.vg, target.lv, cfg)
    notes = []
    with server.session(hold=[image_lock(cfg, volume)]) as session:  # not while a cp or mkfs of it runs
        if on_lio_target(session, target.iqn, look):
            notes += _remove_lio(session, target, volume)
        else:
            notes += _remove_tgt(session, target)
        try:
            for cmd in volume.remove():
                session.run(cmd)
        except NotFound:
            notes.append(f"no volume {volume.device} on {server.host}: already removed")
        except OneIscsiError as err:
            raise OneIscsiError(f"removing {volume.device} failed on {server.host}: {err}") from None
    return notes


def _remove_tgt(session: Session, target: names.TargetName) -> list[str]:
    targets = TargetServer(session)
    found = targets.find(target.iqn, sessions=True)
    notes = []
    if found is None:
        notes.append(f"no target {target.iqn} on {session.host}: already deleted")
    elif found.sessions:
        raise OneIscsiError(f"target {target.iqn} on {session.host} is in use by "
                            f"{', '.join(found.initiators)}: nothing removed")
    else:
        targets.delete(found.tid)
    targets.forget(target.iqn)
    return notes


def _remove_lio(session: Session, target: names.TargetName, volume: storage.Volume) -> list[str]:
    """The LIO target, its storage object and saved entries; refused (by
    the program, which looks at the sessions) while an initiator is logged in."""
    try:
        answer = ask(session, lio.delete(target.iqn, [volume.device], lio.storage_kind(volume.backend)))
    except OneIscsiError as err:
        raise OneIscsiError(f"{err}: nothing removed") from None
    return [] if answer.get("deleted", True) else [f"no target {target.iqn} on {session.host}: already deleted"]


def stat(path: str, cfg: Config, local: Runner, keep_qcow2: bool = False) -> int:
    """The size in MiB the image at path will take."""
    check_allowed(path, cfg)
    with _inspect(path, cfg, local, keep_qcow2) as image:
        return image.size_mb


def monitor(cfg: Config, server: Runner) -> Usage:
    total, free = storage.parse_usage(cfg.backend, server.run_all(storage.usage(cfg)))
    return Usage(total, free)
