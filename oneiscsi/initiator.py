"""Operations on a hypervisor host's open-iscsi initiator. `on` is a Runner or
a Session of that host: anything with run(command)."""
from __future__ import annotations

from . import iscsiadm, names
from .config import Config
from .errors import AlreadyDone, InvalidInput


def discover(on, portal: str) -> str:
    return on.run(iscsiadm.discovery(portal))


def login(on, iqn: str, portal: str) -> bool:
    """Log in; False if a session to that target already existed."""
    try:
        on.run(iscsiadm.login(names.validate(iqn), portal))
    except AlreadyDone:
        return False
    return True


def logout(on, iqn: str) -> bool:
    """Log out; False if there was no session to that target."""
    try:
        on.run(iscsiadm.logout(names.validate(iqn)))
    except AlreadyDone:
        return False
    return True


def forget(on, iqn: str) -> None:
    """Delete the node record, so nothing logs in again at boot; none is fine."""
    on.run(iscsiadm.delete_node(iqn))


def logout_and_forget(on, iqn: str) -> bool:
    """Log out and delete the node record; False if there was no session."""
    was_logged_in = logout(on, iqn)
    forget(on, iqn)
    return was_logged_in


def portal_of(target: names.TargetName, cfg: Config) -> str:
    """The portal a host logs in to: the IQN's host on PORTAL_PORT, if it is a
    plain host name and, when TARGET_SERVERS is set, one of them."""
    host = target.host
    if cfg.target_servers and host.lower() not in {server.lower() for server in cfg.target_servers}:
        raise InvalidInput(f"IQN {target.iqn}: its host {host!r} is not one of TARGET_SERVERS "
                           f"({' '.join(cfg.target_servers)})")
    return portal(host, cfg, f"IQN {target.iqn}: its host")


def portal(host: str, cfg: Config, what: str = "target server") -> str:
    """iscsiadm's portal of a target server on PORTAL_PORT: a plain host name or address."""
    if not iscsiadm.is_plain_host(host):
        raise InvalidInput(f"{what} {host!r} is not a plain host name or IPv4 address "
                           "(letters, digits, '.' and '-' only)")
    return iscsiadm.portal(host, cfg.portal_port)


def is_iscsi(host: str, cfg: Config) -> bool:
    """Whether logins and logouts are done on host (`user@host` is judged by
    its host): not when it is in NO_ISCSI."""
    return host.rpartition("@")[2] not in cfg.no_iscsi
