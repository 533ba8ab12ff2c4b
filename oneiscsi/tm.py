"""Transfer actions: ln, clone, mvds, mv, delete, run on the hypervisor hosts.

Each action is given `hosts`, which makes the Runner of a host by name, and
returns a note saying what it did.
"""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from typing import Callable, Optional

from . import initiator, iscsiadm, names, source, storage
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
_VOLUME = re.compile(r"lv-one-\d+")
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


def device_of(target: names.TargetName, cfg: Config) -> str:
    return storage.volume_named(target.vg, target.lv, cfg).device


def ln(iqn: str, dst: HostPath, cfg: Config, hosts: Hosts) -> str:
    check_path(dst)
    with hosts(dst.host).session() as session:
        return link(session, iqn, dst, cfg)


def link(session: Session, iqn: str, dst: HostPath, cfg: Config) -> str:
    """ln on dst's host, in a session of that host. A failure leaves no node
    record or session that this action made."""
    target = names.parse(iqn)
    portal = initiator.portal_of(target, cfg) if is_iscsi(dst.host, cfg) else None
    session.run(command("mkdir", "-p", posixpath.dirname(dst.path)))
    found = _inspect(session, dst.path)
    if found and found[0] == "d":
        raise OneIscsiError(f"{shown(dst)} is a directory: not linking {iqn} there")
    if portal is None:
        session.run(command("ln", "-sfnT", device_of(target, cfg), dst.path))
        return f"linked {dst} to {device_of(target, cfg)}"
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
    what = "logged in to" if logged_in else "already logged in to"
    return f"{what} {iqn} on {dst.host}, linked {dst.path}"


def mvds(src: HostPath, iqn: str, cfg: Config, hosts: Hosts) -> str:
    check_path(src)
    names.parse(iqn)
    if not is_iscsi(src.host, cfg):
        return f"{src.host} uses the volume directly: nothing to log out"
    with hosts(src.host).session() as session:
        if not logout_and_forget(session, iqn):
            return f"no session to {iqn} on {src.host}: nothing to log out"
    return f"logged out of {iqn} on {src.host}"


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
    if len(parts) >= 2 and _VOLUME.fullmatch(parts[-1]):
        try:
            return names.build(cfg.base_iqn, cfg.host, parts[-2], parts[-1]).iqn
        except names.InvalidName:
            return None
    return None


def delete(dst: HostPath, cfg: Config, hosts: Hosts) -> str:
    """Of a disk link: log out of its target, remove the link. Of a VM
    directory: log out of the targets of the disk links in it, then remove
    it. A link is removed, never followed."""
    check_deletable(dst)
    with hosts(dst.host).session() as session:
        found = _inspect(session, dst.path)
        if found is None:
            return f"{dst} does not exist: nothing to delete"
        kind, target = found
        if kind == "d":
            if _DISK.fullmatch(posixpath.basename(dst.path)):
                raise OneIscsiError(f"{shown(dst)} is a directory, not a disk: not deleted")
            iqns = [_by_path_iqn(link) for link in session.run(disk_links(dst.path)).split("\0")]
        else:
            iqns = [iqn_of_link(target, cfg)] if kind == "l" else []
        logged_out = []
        if is_iscsi(dst.host, cfg):
            logged_out = [iqn for iqn in sorted(set(filter(None, iqns))) if logout_and_forget(session, iqn)]
        session.run(command("rm", "-rf" if kind == "d" else "-f", dst.path))
    if logged_out:
        return f"logged out of {' '.join(logged_out)} on {dst.host}, removed {dst.path}"
    return f"removed {dst}"


def mv(src: HostPath, dst: HostPath, cfg: Config, hosts: Hosts) -> str:
    """One session on each host (a directory's data takes a second)."""
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
        iqn = iqn_of_link(target, cfg)
        if iqn is None:
            raise OneIscsiError(f"{shown(src)} points at {shown(target)}, which is not an iSCSI disk")
        if src.host == dst.host:
            link(on_source, iqn, dst, cfg)
        else:
            ln(iqn, dst, cfg, hosts)  # first: if it fails, the disk is still where it was
            if is_iscsi(src.host, cfg):
                logout_and_forget(on_source, iqn)
        on_source.run(command("rm", "-f", src.path))
    return f"moved {iqn} from {src} to {dst}"


def _copy_directory(src: Runner, src_path: str, dst: Runner, dst_path: str) -> None:
    dst.run(command("mkdir", "-p", dst_path))
    with src.output_stream(command("tar", "-C", src_path, "-cf", "-", ".")) as stream:
        dst.feed(command("tar", "-C", dst_path, "-xf", "-"), source.read_chunks(stream))


def clone() -> None:
    raise OneIscsiError(CLONE_ERROR)
