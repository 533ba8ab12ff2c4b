"""Transfer actions: ln, clone, mvds, mv, delete, run on the hypervisor hosts."""
from __future__ import annotations

import posixpath
import re
from typing import Optional

from . import iqn as names
from . import iscsiadm, source, storage
from .config import Config
from .errors import OneIscsiError
from . import initiator
from .initiator import is_iscsi
from .opennebula import HostPath
from .run import CommandError, Runner, Secret, Session

CLONE_ERROR = "CLONE not supported for TM_ISCSI. Use persistent images"
TIMED_OUT_RC = 124  # timeout(1)
# Waits for udev's by-path link of the LUN, then links it as the VM's disk.
# Arguments: device directory, IQN, LUN, link path. Bounded by timeout(1).
WAIT_AND_LINK = (
    'while :; do for dev in "$1"/*-iscsi-"$2"-lun-"$3"; do '
    'if [ -e "$dev" ]; then exec ln -sfn "$dev" "$4"; fi; done; sleep 0.1; done')
_BY_PATH_IQN = re.compile(r"-iscsi-(iqn\..+)-lun-\d+$")
_VOLUME = re.compile(r"lv-one-\d+")


def wait_and_link(device_dir: str, iqn: str, link: str, timeout: float, lun: int = 1) -> list[str]:
    return ["timeout", f"{timeout:g}", "sh", "-c", WAIT_AND_LINK, "wait-and-link",
            device_dir, iqn, str(lun), link]


def describe(path: str) -> list[str]:
    """Prints `l <link target>`, `d ` or `f ` for path; fails if it is missing."""
    return ["find", path, "-maxdepth", "0", "-printf", "%y %l\\n"]


def logout_and_forget(on, iqn: str) -> bool:
    """Log out and delete the node record; False if there was no session."""
    was_logged_in = initiator.logout(on, iqn)
    initiator.forget(on, iqn)
    return was_logged_in


def device_of(target: names.TargetName, cfg: Config) -> str:
    return storage.volume_named(target.vg, target.lv, cfg).device


def ln(iqn: str, dst: HostPath, cfg: Config, dry_run: bool = False) -> str:
    with Runner(dst.host, cfg, dry_run=dry_run).session() as session:
        return link(session, iqn, dst, cfg)


def link(session: Session, iqn: str, dst: HostPath, cfg: Config) -> str:
    """ln on dst's host, in a session of that host."""
    target = names.parse(iqn)
    session.run(["mkdir", "-p", posixpath.dirname(dst.path)])
    if not is_iscsi(dst.host, cfg):
        session.run(["ln", "-sfn", device_of(target, cfg), dst.path])
        return f"linked {dst} to {device_of(target, cfg)}"
    portal = iscsiadm.portal(target.host, cfg.portal_port)
    # a node record of this target only (discovery would record every target of
    # the server), never logged in to at boot
    session.run(iscsiadm.new_node(iqn, portal))
    session.run(iscsiadm.update_node(iqn, portal, "node.startup", "manual"))
    if cfg.chap_user:
        for command in iscsiadm.chap_settings(iqn, portal, cfg.chap_user, Secret(cfg.chap_password)):
            session.run(command)
    try:
        logged_in = initiator.login(session, iqn, portal)
    except CommandError:
        _quietly(lambda: initiator.forget(session, iqn))  # no node record of a failed login stays
        raise
    try:
        session.run(wait_and_link(cfg.device_dir, iqn, dst.path, cfg.device_timeout),
                    timeout=cfg.device_timeout + cfg.timeout)
    except CommandError as err:
        if logged_in:  # only a session this action opened is closed again
            _quietly(lambda: logout_and_forget(session, iqn))
        if err.rc == TIMED_OUT_RC:
            raise OneIscsiError(f"no device for {iqn} on {dst.host} within {cfg.device_timeout:g} s "
                                f"(DEVICE_TIMEOUT){': logged out again' if logged_in else ''}") from None
        raise
    what = "logged in to" if logged_in else "already logged in to"
    return f"{what} {iqn} on {dst.host}, linked {dst.path}"


def _quietly(cleanup) -> None:
    """Clean-up after a failure: the original error is the one to report."""
    try:
        cleanup()
    except CommandError:
        pass


def mvds(src: HostPath, iqn: str, cfg: Config, dry_run: bool = False) -> str:
    names.parse(iqn)
    if not is_iscsi(src.host, cfg):
        return f"{src.host} uses the volume directly: nothing to log out"
    with Runner(src.host, cfg, dry_run=dry_run).session() as session:
        if not logout_and_forget(session, iqn):
            return f"no session to {iqn} on {src.host}: nothing to log out"
    return f"logged out of {iqn} on {src.host}"


def _inspect(host, path: str) -> Optional[tuple[str, str]]:
    """(kind, link target) of path on host, or None if it does not exist."""
    try:
        kind, _, link = host.run(describe(path), query=True).rstrip("\n").partition(" ")
    except CommandError as err:
        if "No such file" in err.stderr:
            return None
        raise
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


def delete(dst: HostPath, cfg: Config, dry_run: bool = False) -> str:
    with Runner(dst.host, cfg, dry_run=dry_run).session() as session:
        found = _inspect(session, dst.path)
        if found is None:
            return f"{dst} does not exist: nothing to delete"
        kind, target = found
        if kind != "l":
            session.run(["rm", "-rf", dst.path])
            return f"removed {dst}"
        iqn = iqn_of_link(target, cfg)
        logged_out = bool(iqn and is_iscsi(dst.host, cfg) and logout_and_forget(session, iqn))
        session.run(["rm", "-f", dst.path])
    return f"logged out of {iqn} on {dst.host}, removed {dst.path}" if logged_out else f"removed {dst}"


def mv(src: HostPath, dst: HostPath, cfg: Config, dry_run: bool = False) -> str:
    """One session on each host (a directory's data takes a second)."""
    if src == dst:
        return f"{src} is already in place: nothing to move"
    source_host = Runner(src.host, cfg, dry_run=dry_run)
    with source_host.session() as source:
        found = _inspect(source, src.path)
        if found is None:
            raise OneIscsiError(f"{src} does not exist")
        kind, target = found
        if kind != "l":
            _copy_directory(source_host, src.path, Runner(dst.host, cfg, dry_run=dry_run), dst.path)
            source.run(["rm", "-rf", src.path])
            return f"moved {src} to {dst}"
        iqn = iqn_of_link(target, cfg)
        if iqn is None:
            raise OneIscsiError(f"{src} points at {target}, which is not an iSCSI disk")
        if src.host == dst.host:
            link(source, iqn, dst, cfg)
        else:
            ln(iqn, dst, cfg, dry_run)  # first: if it fails, the disk is still where it was
            if is_iscsi(src.host, cfg):
                logout_and_forget(source, iqn)
        source.run(["rm", "-f", src.path])
    return f"moved {iqn} from {src} to {dst}"


def _copy_directory(src: Runner, src_path: str, dst: Runner, dst_path: str) -> None:
    dst.run(["mkdir", "-p", dst_path])
    with src.output_stream(["tar", "-C", src_path, "-cf", "-", "."]) as stream:
        dst.feed(["tar", "-C", dst_path, "-xf", "-"], source.read_chunks(stream))


def clone() -> None:
    raise OneIscsiError(CLONE_ERROR)
