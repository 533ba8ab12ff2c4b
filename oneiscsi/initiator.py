"""Operations on a hypervisor host's open-iscsi initiator. `on` is a Runner or
a Session of that host: anything with run(argv)."""
from __future__ import annotations

from . import iscsiadm
from . import iqn as iqn_names
from .config import Config
from .run import Accepting, CommandError


def discover(on, target_host: str) -> str:
    return on.run(iscsiadm.discovery(target_host))


def login(on, iqn: str, target_host: str) -> bool:
    """Log in; False if a session to that target already existed."""
    return _changed(on, iscsiadm.login(iqn_names.validate(iqn), target_host), iscsiadm.SESSION_EXISTS_RC)


def logout(on, iqn: str) -> bool:
    """Log out; False if there was no session to that target."""
    return _changed(on, iscsiadm.logout(iqn_names.validate(iqn)), iscsiadm.NO_SESSION_RC)


def _changed(on, argv: list[str], nothing_to_do_rc: int) -> bool:
    """Run argv; False if it ended with the code meaning it was already done."""
    try:
        on.run(argv)
    except CommandError as err:
        if err.rc == nothing_to_do_rc:
            return False
        raise
    return True


def forget(on, iqn: str) -> None:
    """Delete the node record, so nothing logs in again at boot; none is fine."""
    on.run(Accepting(iscsiadm.delete_node(iqn), iscsiadm.NO_SESSION_RC))


def is_iscsi(host: str, cfg: Config) -> bool:
    """Whether logins and logouts are done on host: not when it is in NO_ISCSI."""
    return host not in cfg.no_iscsi
