"""Operations on a hypervisor host's open-iscsi initiator. `on` is a Runner or
a Session of that host: anything with run(command)."""
from __future__ import annotations

from . import iscsiadm, names
from .config import Config
from .errors import AlreadyDone


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


def is_iscsi(host: str, cfg: Config) -> bool:
    """Whether logins and logouts are done on host: not when it is in NO_ISCSI."""
    return host not in cfg.no_iscsi
