"""Transfer actions: ln, clone, mvds, mv, delete, run on the hypervisor hosts.

Each action is given `hosts`, which makes the Runner of a host by name, and
returns a note saying what it did.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Callable, Optional

from . import initiator, iscsiadm, names, source, storage
from .command import Command, command
from .config import Config
from .errors import NotFound, OneIscsiError
from .initiator import is_iscsi, logout_and_forget
from .run import Runner, Session
from .undo import Undo

CLONE_ERROR = "CLONE not supported for TM_ISCSI. Use persistent images"
TIMED_OUT_RC = 124  # timeout(1)
# Waits for udev's by-path link of the LUN, then links it as the VM's disk.
# Arguments: device directory, IQN, LUN, link path. Bounded by timeout(1).
WAIT_AND_LINK = (
    'while :; do for dev in "$1"/*-iscsi-"$2"-lun-"$3"; do '
    'if [ -e "$dev" ]; then exec ln -sfn "$dev" "$4"; fi; done; sleep 0.1; done')
_BY_PATH_IQN = re.compile(r"-iscsi-(iqn\..+)-lun-\d+$")
_VOLUME = re.compile(r"lv-one-\d+")

Hosts = Callable[[str], Runner]


@dataclass(frozen=True)
class HostPath:
    """A path on a host: OpenNebula's `host:/path`."""
    host: str
    path: str

    def __str__(self) -> str:
        return f"{self.host}:{self.path}"


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
                   explain=lambda err: NotFound(f"no {path}") if "No such file" in err.stderr else None)


def device_of(target: names.TargetName, cfg: Config) -> str:
    return storage.volume_named(target.vg, target.lv, cfg).device


def ln(iqn: str, dst: HostPath, cfg: Config, hosts: Hosts) -> str:
    with hosts(dst.host).session() as session:
        return link(session, iqn, dst, cfg)


def link(session: Session, iqn: str, dst: HostPath, cfg: Config) -> str:
    """ln on dst's host, in a session of that host. A failure leaves no node
    record or session that this action made."""
    target = names.parse(iqn)
    session.run(command("mkdir", "-p", posixpath.dirname(dst.path)))
    if not is_iscsi(dst.host, cfg):
        session.run(command("ln", "-sfn", device_of(target, cfg), dst.path))
        return f"linked {dst} to {device_of(target, cfg)}"
    portal = iscsiadm.portal(target.host, cfg.portal_port)
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


def iqn_of_link(link: str, cfg: Config) -> Optional[str]:
    """The IQN a disk link points at: a by-path iSCSI device, or (NO_ISCSI
    hosts) the volume's own device."""
    match = _BY_PATH_IQN.search(posixpath.basename(link))
    if match:
        return match.group(1)
    parts = link.rstrip("/").split("/")
    if len(parts) >= 2 and _VOLUME.fullmatch(parts[-1]):
        try:
            return names.build(cfg.base_iqn, cfg.host, parts[-2], parts[-1]).iqn
        except names.InvalidName:
            return None
    return None


def delete(dst: HostPath, cfg: Config, hosts: Hosts) -> str:
    with hosts(dst.host).session() as session:
        found = _inspect(session, dst.path)
        if found is None:
            return f"{dst} does not exist: nothing to delete"
        kind, target = found
        if kind != "l":
            session.run(command("rm", "-rf", dst.path))
            return f"removed {dst}"
        iqn = iqn_of_link(target, cfg)
        logged_out = bool(iqn and is_iscsi(dst.host, cfg) and logout_and_forget(session, iqn))
        session.run(command("rm", "-f", dst.path))
    return f"logged out of {iqn} on {dst.host}, removed {dst.path}" if logged_out else f"removed {dst}"


def mv(src: HostPath, dst: HostPath, cfg: Config, hosts: Hosts) -> str:
    """One session on each host (a directory's data takes a second)."""
    if src == dst:
        return f"{src} is already in place: nothing to move"
    source_host = hosts(src.host)
    with source_host.session() as on_source:
        found = _inspect(on_source, src.path)
        if found is None:
            raise OneIscsiError(f"{src} does not exist")
        kind, target = found
        if kind != "l":
            _copy_directory(source_host, src.path, hosts(dst.host), dst.path)
            on_source.run(command("rm", "-rf", src.path))
            return f"moved {src} to {dst}"
        iqn = iqn_of_link(target, cfg)
        if iqn is None:
            raise OneIscsiError(f"{src} points at {target}, which is not an iSCSI disk")
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
