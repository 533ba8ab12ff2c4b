"""open-iscsi: builders of `iscsiadm` commands for the hypervisor hosts. Pure."""
from __future__ import annotations

from . import values
from .command import Command, command
from .errors import AlreadyDone

DEFAULT_PORT = 3260
NO_SESSION_RC = 21  # "No matching sessions found" (also: no node record)
SESSION_EXISTS_RC = 15


def _iscsiadm(*args: str, **options) -> Command:
    return command("iscsiadm", *args, privileged=True, **options)


def _already_done(rc: int, what: str):
    return lambda err: AlreadyDone(what) if err.rc == rc else None


def is_plain_host(host: str) -> bool:
    """A host name or IPv4 address only: letters, digits, '.' and '-', not
    starting or ending with '.' or '-'; no port, user, brackets or ':'."""
    try:
        values.host_name(host)
    except ValueError:
        return False
    return True


def portal(host: str, port: int) -> str:
    """iscsiadm's -p value: the host alone for the standard port."""
    if port == DEFAULT_PORT:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def discovery(portal: str) -> Command:
    return _iscsiadm("-m", "discovery", "-t", "st", "-p", portal)


def login(iqn: str, portal: str) -> Command:
    """Fails with AlreadyDone when a session to the target exists."""
    return _iscsiadm("-m", "node", "--targetname", iqn, "-p", portal, "--login",
                     explain=_already_done(SESSION_EXISTS_RC, f"already logged in to {iqn}"))


def logout(iqn: str) -> Command:
    """Fails with AlreadyDone when there is no session to the target."""
    return _iscsiadm("-m", "node", "--targetname", iqn, "--logout",
                     explain=_already_done(NO_SESSION_RC, f"no session to {iqn}"))


def rescan(iqn: str) -> Command:
    """Have the host's sessions to the target read the LUNs' sizes again."""
    return _iscsiadm("-m", "node", "--targetname", iqn, "--rescan")


def new_node(iqn: str, portal: str) -> Command:
    return _iscsiadm("-m", "node", "--targetname", iqn, "-p", portal, "-o", "new")


def delete_node(iqn: str) -> Command:
    """No node record is fine."""
    return _iscsiadm("-m", "node", "--targetname", iqn, "-o", "delete", accept=(NO_SESSION_RC,))


def update_node(iqn: str, portal: str, name: str, value: str, secret: bool = False) -> Command:
    return _iscsiadm("-m", "node", "--targetname", iqn, "-p", portal, "-o", "update", "-n", name, "-v", value,
                     secrets=(value,) if secret else ())


def chap_settings(iqn: str, portal: str, user: str, password: str) -> list[Command]:
    return [update_node(iqn, portal, "node.session.auth.authmethod", "CHAP"),
            update_node(iqn, portal, "node.session.auth.username", user),
            update_node(iqn, portal, "node.session.auth.password", password, secret=True)]
