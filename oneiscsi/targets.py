"""Operations on the target server's tgtd, through a Runner."""
from __future__ import annotations

from typing import Optional

from . import iqn as iqn_names
from . import tgt
from .errors import InvalidInput, NotFound, OneIscsiError
from .run import CommandError, Runner


class TargetServer:
    def __init__(self, runner: Runner):
        self.runner = runner
        self.host = runner.host

    def _tgtadm(self, argv: list[str], query: bool = False, tid: Optional[int] = None) -> str:
        try:
            return self.runner.run(argv, query=query)
        except CommandError as err:
            raise self._explain(err, tid) from None

    def _explain(self, err: CommandError, tid: Optional[int]) -> OneIscsiError:
        if tgt.NOT_RUNNING in err.stderr:
            err.hint = f"tgtd is not running on {self.host}"
        elif tgt.NO_SUCH_TARGET in err.stderr and tid is not None:
            return NotFound(f"no target with TID {tid} on {self.host}")
        elif tgt.STILL_ACTIVE in err.stderr and tid is not None:
            return OneIscsiError(f"target TID {tid} on {self.host} still has sessions: "
                                 "log the initiators out first, or use --force")
        return err

    def list(self) -> list[tgt.Target]:
        return tgt.parse_show(self._tgtadm(tgt.show_targets(), query=True))

    def get(self, iqn: str) -> tgt.Target:
        target = tgt.find(self.list(), iqn_names.validate(iqn))
        if target is None:
            raise NotFound(f"no target named {iqn} on {self.host}")
        return target

    def tid_of(self, iqn: str) -> int:
        return self.get(iqn).tid

    def new(self, iqn: str, tid: Optional[int] = None) -> int:
        """Create a target; without a TID, the lowest free one >= BASE_TID."""
        iqn_names.validate(iqn)
        targets = self.list()
        existing = tgt.find(targets, iqn)
        if existing is not None:
            raise OneIscsiError(f"target {iqn} already exists on {self.host} with TID {existing.tid}")
        if tid is None:
            tid = tgt.lowest_free_tid(targets, self.runner.cfg.base_tid)
        elif any(target.tid == tid for target in targets):
            raise OneIscsiError(f"TID {tid} is already used on {self.host}")
        self._tgtadm(tgt.new_target(tid, iqn), tid=tid)
        return tid

    def bind_all(self, tid: int) -> None:
        self._tgtadm(tgt.bind_all(tid), tid=tid)

    def bind_lun(self, tid: int, device: str, lun: int = 1) -> None:
        if not device.startswith("/"):
            raise InvalidInput(f"backing store must be an absolute path, got {device!r}")
        try:
            self.runner.run(tgt.new_lun(tid, device, lun))
        except CommandError as err:
            if "invalid request" in err.stderr:
                err.hint = f"cannot add {device} as LUN {lun} of TID {tid} (missing device or LUN in use?)"
            raise self._explain(err, tid) from None

    def resolve_tid(self, tid_or_iqn: str) -> int:
        """A TID given as a number, or the TID of exactly that IQN."""
        if tid_or_iqn.isdigit():
            tid = int(tid_or_iqn)
            if tid < 1:
                raise InvalidInput(f"TID must be a positive integer, got {tid_or_iqn!r}")
            return tid
        return self.tid_of(tid_or_iqn)

    def delete(self, tid_or_iqn: str, force: bool = False) -> int:
        tid = self.resolve_tid(tid_or_iqn)
        self._tgtadm(tgt.delete_target(tid, force), tid=tid)
        return tid
