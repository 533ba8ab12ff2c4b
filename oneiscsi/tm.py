"""Transfer actions: ln, clone, mvds, mv, delete, cpds, resize and the live
migration steps, run on the hypervisor hosts (and the target server).

Each action is given `hosts`, which makes the Runner of a host by name, and
returns a note saying what it did.

Transfer actions get no datastore template: what a disk is, they learn from
what ln left beside it. Next to each disk link `disk.<N>` ln writes a second
link, `.disk.<N>.iqn`, whose target is the IQN of the disk's target (on a
NO_ISCSI host the disk links to the volume, which names no IQN). mv carries
both to the destination, whatever host that is.
"""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from typing import Callable, Optional

from . import initiator, iscsiadm, names, storage  # datastore, source: in the few actions that use them
from .command import Command, command
from .config import Config
from .errors import InvalidInput, NotFound, OneIscsiError, shown
from .initiator import is_iscsi, logout_and_forget
from .run import Runner, Session
from .undo import Undo

CLONE_ERROR = "CLONE not supported for TM_ISCSI. Use persistent images"
TIMED_OUT_RC = 124  # timeout(1)
# Waits for udev's by-path link of the LUN, then links it as the VM's disk.
# Arguments: device directory, IQN, LUN, link path. Bounded by timeout(1).
# Each round writes a byte to the action's connection: once that is gone the
# write fails and the loop ends, and the link is made only right after a
# write that succeeded.
WAIT_AND_LINK = (
    'while printf .; do for dev in "$1"/*-iscsi-"$2"-lun-"$3"; do '
    'if [ -e "$dev" ] && printf .; then exec ln -sfnT "$dev" "$4"; fi; done; sleep 0.1; done; exit 1')
_BY_PATH_IQN = re.compile(r"-iscsi-(iqn\..+)-lun-\d+$")
_VM_ID = re.compile(r"[0-9]+")
_DISK = re.compile(r"disk\.[0-9]+")
# trees no VM directory is ever in: delete refuses anything inside them
_SYSTEM_TREES = frozenset({"bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "root",
                           "run", "sbin", "sys", "usr"})
PATH_MAX = 4095
NAME_MAX = 255

Hosts = Callable[[str], Runner]


@dataclass(frozen=True)
class HostPath:
    """A path on a host: OpenNebula's `host:/path`."""
    host: str
    path: str

    def __str__(self) -> str:
        return f"{self.host}:{self.path}"


def check_path(where: HostPath) -> HostPath:
    """A path a transfer action may work on: no trailing '/' (which would
    follow a symlink), no '.' or '..' components, within PATH_MAX and NAME_MAX."""
    path = where.path
    if len(path) > PATH_MAX:
        raise InvalidInput(f"path {shown(where)} is longer than {PATH_MAX} characters")
    parts = path.split("/")
    if any(part in (".", "..") for part in parts):
        raise InvalidInput(f"path {shown(where)} has a '.' or '..' component: transfer actions stay inside "
                           "the path they are given")
    if path.endswith("/"):
        raise InvalidInput(f"path {shown(where)} ends with '/': give it without, as OpenNebula does")
    if any(len(os.fsencode(part)) > NAME_MAX for part in parts):
        raise InvalidInput(f"path {shown(where)} has a component longer than {NAME_MAX} bytes")
    return where


def check_deletable(where: HostPath) -> HostPath:
    """delete removes only what OpenNebula puts on a host: a VM directory
    `<DS_LOCATION>/<DS_ID>/<VM_ID>` or a disk in it, `disk.<N>`. So the last
    component is a VM ID or `disk.<N>`, the path has at least three
    components, and it is not inside a system tree (/etc, /usr, /proc ...)."""
    parts = [part for part in check_path(where).path.split("/") if part]
    if (len(parts) < 3 or parts[0] in _SYSTEM_TREES
            or not (_VM_ID.fullmatch(parts[-1]) or _DISK.fullmatch(parts[-1]))):
        raise InvalidInput(f"refusing to delete {shown(where)}: not a VM directory "
                           "(<DS_LOCATION>/<DS_ID>/<VM_ID>) or a disk in one (disk.<N>)")
    return where


def wait_and_link(device_dir: str, iqn: str, link: str, timeout: float, lun: int = 1,
                  timed_out: str = "") -> Command:
    """Link the LUN's device at link once udev made it; timed_out is the
    error when it does not come within timeout."""
    return command("timeout", f"{timeout:g}", "sh", "-c", WAIT_AND_LINK, "wait-and-link",
                   device_dir, iqn, str(lun), link,
                   explain=lambda err: OneIscsiError(timed_out) if timed_out and err.rc == TIMED_OUT_RC else None)


def describe(path: str) -> Command:
    """Prints `l <link target>`, `d ` or `f ` for path; NotFound if it is missing."""
    return command("find", path, "-maxdepth", "0", "-printf", "%y %l\\n", query=True,
                   explain=lambda err: NotFound(f"no {shown(path)}") if "No such file" in err.stderr else None)


def disk_links(directory: str) -> Command:
    """Prints the targets of the `disk.*` links at the top of directory, each
    followed by a NUL."""
    return command("find", directory, "-mindepth", "1", "-maxdepth", "1", "-type", "l", "-name", "disk.*",
                   "-printf", "%l\\0", query=True)


def carrier_of(disk: str) -> str:
    """The link beside a disk link that holds its IQN and the host that made
    the disk link: `<IQN>@<host>` (`<IQN>` alone in earlier versions)."""
    head, name = posixpath.split(disk)
    return posixpath.join(head, f".{name}.iqn")


def disk_ids(where: HostPath) -> tuple[int, int]:
    """(VM ID, disk ID) of a disk path `<...>/<VM_ID>/disk.<N>`."""
    parts = check_path(where).path.split("/")
    if len(parts) < 3 or not _VM_ID.fullmatch(parts[-2]) or not _DISK.fullmatch(parts[-1]):
        raise InvalidInput(f"{shown(where)} is not a VM's disk (<DS_LOCATION>/<DS_ID>/<VM_ID>/disk.<N>)")
    return int(parts[-2]), int(parts[-1].partition(".")[2])


def device_of(target: names.TargetName, cfg: Config) -> str:
    return storage.volume_named(target.vg, target.lv, cfg).device


def ln(iqn: str, dst: HostPath, cfg: Config, hosts: Hosts) -> str:
    check_path(dst)
    with hosts(dst.host).session() as session:
        return link(session, iqn, dst, cfg)[0]


def link(session: Session, iqn: str, dst: HostPath, cfg: Config) -> tuple[str, str]:
    """ln on dst's host, in a session of that host: (a note, the device
    linked). A failure leaves no node record or session that this action made."""
    target = names.parse(iqn)
    portal = initiator.portal_of(target, cfg) if is_iscsi(dst.host, cfg) else None
    session.run(command("mkdir", "-p", posixpath.dirname(dst.path)))
    found = _inspect(session, dst.path)
    if found and found[0] == "d":
        raise OneIscsiError(f"{shown(dst)} is a directory: not linking {iqn} there")
    if portal is None:
        device = device_of(target, cfg)
        _make_link(session, device, dst.path, iqn, dst.host)
        return f"linked {dst} to {device}", device
    undo = Undo(dst.host)
    undo.push(f"deleting the node record of {iqn}", lambda: initiator.forget(session, iqn))
    # a node record of this target only (discovery would record every target of
    # the server), never logged in to at boot
    node = [iscsiadm.new_node(iqn, portal), iscsiadm.update_node(iqn, portal, "node.startup", "manual")]
    if cfg.chap_user:
        node += iscsiadm.chap_settings(iqn, portal, cfg.chap_user, cfg.chap_password)
    undo.step(None, lambda: [session.run(cmd) for cmd in node])
    logged_in = undo.step(None, lambda: initiator.login(session, iqn, portal))
    if logged_in:
        undo.push(f"logging out of {iqn}", lambda: initiator.logout(session, iqn))
    else:
        undo.keep()  # the session, and so its node record, were there before
    timed_out = (f"no device for {iqn} on {dst.host} within {cfg.device_timeout:g} s (DEVICE_TIMEOUT)"
                 f"{': logged out again' if logged_in else ''}")
    wait = wait_and_link(cfg.device_dir, iqn, dst.path, cfg.device_timeout, timed_out=timed_out)
    undo.step(None, lambda: session.run(wait, timeout=cfg.device_timeout + cfg.timeout))
    device = undo.step(None, lambda: (_inspect(session, dst.path) or ("", ""))[1])  # none under --dry-run
    undo.step(None, lambda: _carry(session, dst.path, iqn, dst.host))
    what = "logged in to" if logged_in else "already logged in to"
    return f"{what} {iqn} on {dst.host}, linked {dst.path}", device


def _make_link(on, device: str, path: str, iqn: str, host: str) -> None:
    """The disk link host uses, and the link beside it."""
    on.run(command("ln", "-sfnT", device, path))
    _carry(on, path, iqn, host)


def _carry(on, path: str, iqn: str, host: str) -> None:
    on.run(command("ln", "-sfnT", f"{iqn}@{host}", carrier_of(path)))


def _carried(on, path: str) -> tuple[Optional[str], Optional[str]]:
    """(IQN, host that made the disk link) from the link beside a disk at
    path; the host is None for links of earlier versions, both are None
    without that link."""
    carrier = _inspect(on, carrier_of(path))
    if carrier and carrier[0] == "l":
        iqn, _, host = carrier[1].partition("@")
        try:
            return names.parse(iqn).iqn, host or None
        except names.InvalidName:
            pass
    return None, None


def _unlink(on, path: str) -> None:
    on.run(command("rm", "-f", path, carrier_of(path)))


def mvds(src: HostPath, iqn: str, cfg: Config, hosts: Hosts) -> str:
    """Log the host out of the disk's target. When iqn is another image (a
    save-as), the disk's data is copied into it on the target server first."""
    from . import datastore

    check_path(src)
    names.parse(iqn)
    with hosts(src.host).session() as session:
        disk = disk_iqn(session, src.path, cfg) or iqn
        logged_out = is_iscsi(src.host, cfg) and logout_and_forget(session, disk)
    notes = [f"logged out of {disk} on {src.host}" if logged_out
             else f"no session to {disk} on {src.host}: nothing to log out"]
    if disk != iqn:
        copied = datastore.copy_into(disk, iqn, cfg, hosts(names.parse(disk).host))
        notes.append(f"saved {disk} into {iqn}: {copied}")
    notes += _remove_private_copy(disk, cfg, hosts)  # a non-persistent disk's copy ends with the disk
    return "; ".join(notes)


def _remove_private_copy(iqn: str, cfg: Config, hosts: Hosts) -> list[str]:
    """A VM's private copy of a non-persistent image, removed with its target
    on its target server; nothing for any other disk. Returns notes."""
    private = names.parse(iqn)
    if not storage.is_private_volume(private.lv):
        return []
    from . import datastore

    return [*datastore.remove(private, cfg, hosts(private.host)), f"removed the VM's copy {iqn}"]


def cpds(src: HostPath, new_source: str, snapshot: str, cfg: Config, hosts: Hosts) -> str:
    """Copy the disk's data into the image new_source (save-as of a running
    or stopped VM), on the target server; the disk stays as it is."""
    from . import datastore

    check_path(src)
    names.parse(new_source)
    if snapshot not in ("", "-1"):
        raise InvalidInput(f"snapshot {shown(snapshot)}: disk snapshots are not supported by the iscsi driver")
    with hosts(src.host).session() as session:
        disk = disk_iqn(session, src.path, cfg)
    if disk is None:
        raise OneIscsiError(f"{shown(src)} is not an iSCSI disk: nothing to copy into {new_source}")
    copied = datastore.copy_into(disk, new_source, cfg, hosts(names.parse(disk).host))
    return f"saved {disk} into {new_source}: {copied}"


def resize(dst: HostPath, size_mb: str, cfg: Config, hosts: Hosts) -> str:
    """Grow the disk's volume, have tgtd report the new size, rescan on the host."""
    from . import datastore

    check_path(dst)
    size = _size_mb(size_mb)
    with hosts(dst.host).session() as session:
        disk = disk_iqn(session, dst.path, cfg)
        if disk is None:
            raise OneIscsiError(f"{shown(dst)} is not an iSCSI disk: nothing to resize")
        grown = datastore.grow(disk, size, cfg, hosts(names.parse(disk).host))
        if not is_iscsi(dst.host, cfg):
            return grown
        session.run(iscsiadm.rescan(disk))
    return f"{grown}; rescanned {disk} on {dst.host}"


def _size_mb(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise InvalidInput(f"size must be a positive number of MB, got {shown(repr(text))}")
    return int(text)


def disk_iqn(on, path: str, cfg: Config, found: Optional[tuple[str, str]] = None) -> Optional[str]:
    """The IQN of the disk at path on a host: from the link beside it, else
    (links of earlier versions) from where the disk link points; None if
    there is no disk link. found: what _inspect already said of path."""
    iqn, _ = _carried(on, path)
    if iqn:
        return iqn
    found = found or _inspect(on, path)
    if found is None or found[0] != "l":
        return None
    return iqn_of_link(found[1], cfg)


def _inspect(on, path: str) -> Optional[tuple[str, str]]:
    """(kind, link target) of path on a host, or None if it does not exist."""
    try:
        kind, _, link = on.run(describe(path)).rstrip("\n").partition(" ")
    except NotFound:
        return None
    return kind, link


def _by_path_iqn(link: str) -> Optional[str]:
    """The IQN of a by-path iSCSI device a link points at."""
    match = _BY_PATH_IQN.search(posixpath.basename(link))
    return match.group(1) if match else None


def iqn_of_link(link: str, cfg: Config) -> Optional[str]:
    """The IQN a disk link points at: a by-path iSCSI device, or (NO_ISCSI
    hosts) the volume's own device."""
    iqn = _by_path_iqn(link)
    if iqn:
        return iqn
    parts = link.rstrip("/").split("/")
    if len(parts) >= 2 and storage.is_image_volume(parts[-1]):
        try:
            return names.build(cfg.base_iqn, cfg.host, parts[-2], parts[-1]).iqn
        except names.InvalidName:
            return None
    return None


def delete(dst: HostPath, cfg: Config, hosts: Hosts) -> str:
    """Of a disk link: log out of its target, remove the link (and, for a
    VM's private copy of a non-persistent image, that copy and its target).
    Of a VM directory: log out of the targets of the disk links in it, then
    remove it. A link is removed, never followed."""
    check_deletable(dst)
    with hosts(dst.host).session() as session:
        found = _inspect(session, dst.path)
        if found is None:
            return f"{dst} does not exist: nothing to delete"
        kind, target = found
        owner = None
        if kind == "d":
            if _DISK.fullmatch(posixpath.basename(dst.path)):
                raise OneIscsiError(f"{shown(dst)} is a directory, not a disk: not deleted")
            iqns = [_by_path_iqn(link) for link in session.run(disk_links(dst.path)).split("\0")]
        elif kind == "l":
            iqn, owner = _carried(session, dst.path)
            iqns = [iqn or iqn_of_link(target, cfg)]
        else:
            iqns = []
        logged_out = []
        if is_iscsi(dst.host, cfg):
            logged_out = [iqn for iqn in sorted(set(filter(None, iqns))) if logout_and_forget(session, iqn)]
        if owner not in (None, dst.host):
            # a shared system datastore, cleaned up on the host a VM migrated
            # from: the link is the new host's, and its own delete removes it
            done = f"logged out of {logged_out[0]} on {dst.host}" if logged_out else f"no session on {dst.host}"
            return f"{done}; left {dst.path}: {owner} linked it"
        # a private copy goes before its link: if removing it fails, delete can be run again
        notes = [note for iqn in (iqns if kind == "l" else []) if iqn
                 for note in _remove_private_copy(iqn, cfg, hosts)]
        if kind == "d":
            session.run(command("rm", "-rf", dst.path))
        else:
            _unlink(session, dst.path)
    done = (f"logged out of {' '.join(logged_out)} on {dst.host}, removed {dst.path}" if logged_out
            else f"removed {dst}")
    return "; ".join([done, *notes])


def mv(src: HostPath, dst: HostPath, cfg: Config, hosts: Hosts) -> str:
    """Move a disk: link it on the destination, log the source out, and leave
    at the source path what the destination has. With a shared system
    datastore both paths are one file; with the ssh one the system TM copies
    the source's directory to the destination next: either way the
    destination ends with the right link. One session on each host (a
    directory's data takes a second)."""
    check_path(src)
    check_path(dst)
    if src == dst:
        return f"{src} is already in place: nothing to move"
    source_host = hosts(src.host)
    with source_host.session() as on_source:
        found = _inspect(on_source, src.path)
        if found is None:
            raise OneIscsiError(f"{shown(src)} does not exist")
        kind, target = found
        if kind != "l":  # removed after the copy: only what delete may remove
            check_deletable(src)
            _copy_directory(source_host, src.path, hosts(dst.host), dst.path)
            on_source.run(command("rm", "-rf", src.path))
            return f"moved {src} to {dst}"
        iqn = disk_iqn(on_source, src.path, cfg, found)
        if iqn is None:
            raise OneIscsiError(f"{shown(src)} points at {shown(target)}, which is not an iSCSI disk")
        if src.host == dst.host:
            link(on_source, iqn, dst, cfg)
            _unlink(on_source, src.path)
            return f"moved {iqn} from {src} to {dst}"
        with hosts(dst.host).session() as on_destination:
            _, device = link(on_destination, iqn, dst, cfg)  # first: if it fails, the disk is still where it was
        if is_iscsi(src.host, cfg):
            logout_and_forget(on_source, iqn)
        _make_link(on_source, device, src.path, iqn, dst.host)
    return f"moved {iqn} from {src} to {dst}"


def clone(source_iqn: str, dst: HostPath, cfg: Config, hosts: Hosts, allowed: bool) -> str:
    """A non-persistent disk: a private copy of the image for this VM (volume
    and target made on the target server), linked as ln links an image."""
    from . import datastore

    if not allowed:
        raise OneIscsiError(CLONE_ERROR)
    vm_id, disk_id = disk_ids(dst)
    image = names.parse(source_iqn)
    server = hosts(image.host)
    copy = datastore.private_copy(image, vm_id, disk_id, cfg, server)
    undo = Undo(dst.host)
    undo.push(f"removing {copy.source}", lambda: datastore.remove(names.parse(copy.source), cfg, server))
    note = undo.step(None, lambda: ln(copy.source, dst, cfg, hosts))
    undo.keep()
    return f"copied {image.iqn} to {copy.source}; {note}"


def migration_hosts(step: str, src_host: str, dst_host: str, disks: list[int]) -> list[str]:
    """The hosts a step of a live migration reaches; none when it has nothing to do."""
    if src_host == dst_host or not disks:
        return []
    return [src_host] if step == "post" else [src_host, dst_host]


def migrate(step: str, src_host: str, dst_host: str, vm_dir: str, disks: list[int], cfg: Config,
            hosts: Hosts) -> str:
    """Live migration of the VM's iSCSI disks: pre logs the destination in
    and links its disks before the VM moves, post logs the source out after,
    fail takes back what pre did and links the disks for the source again."""
    if not migration_hosts(step, src_host, dst_host, disks):
        return "nothing to do"
    paths = [check_path(HostPath(src_host, f"{vm_dir}/disk.{disk}")).path for disk in disks]
    with hosts(src_host).session() as on_source:
        iqns = {path: disk_iqn(on_source, path, cfg) for path in paths}
        missing = [path for path, iqn in iqns.items() if iqn is None]
        if missing:
            raise OneIscsiError(f"no iSCSI disk at {', '.join(missing)} on {src_host}")
        if step == "post":
            out = [iqn for iqn in iqns.values() if is_iscsi(src_host, cfg) and logout_and_forget(on_source, iqn)]
            return f"logged out of {' '.join(out)} on {src_host}" if out else f"nothing to log out on {src_host}"
        if step == "fail":
            with hosts(dst_host).session() as on_destination:
                for iqn in iqns.values():
                    if is_iscsi(dst_host, cfg):
                        logout_and_forget(on_destination, iqn)
            for path, iqn in iqns.items():  # a shared system datastore: the destination's links were these
                link(on_source, iqn, HostPath(src_host, path), cfg)
            return f"logged out of {' '.join(iqns.values())} on {dst_host}, links on {src_host} as before"
    undo = Undo(dst_host)
    with hosts(dst_host).session() as on_destination:
        for path, iqn in iqns.items():
            undo.push(f"logging out of {iqn}", lambda iqn=iqn: is_iscsi(dst_host, cfg) and logout_and_forget(
                on_destination, iqn))
            undo.step(f"linking {path}", lambda path=path, iqn=iqn: link(on_destination, iqn, HostPath(
                dst_host, path), cfg))
        undo.keep()
    return f"linked {' '.join(iqns.values())} on {dst_host}"


def _copy_directory(src: Runner, src_path: str, dst: Runner, dst_path: str) -> None:
    from . import source

    dst.run(command("mkdir", "-p", dst_path))
    with src.output_stream(command("tar", "-C", src_path, "-cf", "-", ".")) as stream:
        dst.feed(command("tar", "-C", dst_path, "-xf", "-"), source.read_chunks(stream))

