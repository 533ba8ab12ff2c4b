"""Operations on a hypervisor host's open-iscsi initiator, through a Runner."""
from __future__ import annotations

from . import iscsiadm
from . import iqn as iqn_names
from .config import Config
from .run import CommandError, Runner


class Initiator:
    def __init__(self, runner: Runner):
        self.runner = runner

    def discover(self, target_host: str) -> str:
        return self.runner.run(iscsiadm.discovery(target_host))

    def login(self, iqn: str, target_host: str) -> bool:
        """Log in; False if a session to that target already existed."""
        try:
            self.runner.run(iscsiadm.login(iqn_names.validate(iqn), target_host))
        except CommandError as err:
            if err.rc == iscsiadm.SESSION_EXISTS_RC:
                return False
            raise
        return True

    def logout(self, iqn: str) -> bool:
        """Log out; False if there was no session to that target."""
        try:
            self.runner.run(iscsiadm.logout(iqn_names.validate(iqn)))
        except CommandError as err:
            if err.rc == iscsiadm.NO_SESSION_RC:
                return False
            raise
        return True


def is_iscsi(host: str, cfg: Config) -> bool:
    """Whether logins and logouts are done on host: not when it is in NO_ISCSI."""
    return host not in cfg.no_iscsi
