"""Operations on the target server's tgtd, through a Session."""
from __future__ import annotations

from typing import Optional

from . import iqn as names
from . import tgt, tgtconf
from .errors import InvalidInput, NotFound, OneIscsiError
from .run import CommandError, Secret, Session

NEW_TARGET_ATTEMPTS = 10


class TargetServer:
    def __init__(self, session: Session):
        self.session = session
        self.host = session.runner.host
        self.cfg = session.runner.cfg

    def _tgtadm(self, argv: list[str], query: bool = False, tid: Optional[int] = None) -> str:
        try:
            return self.session.run(argv, query=query)
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

    def find(self, iqn: str) -> Optional[tgt.Target]:
        return tgt.find(self.list(), names.validate(iqn))

    def get(self, iqn: str) -> tgt.Target:
        target = self.find(iqn)
        if target is None:
            raise NotFound(f"no target named {iqn} on {self.host}")
        return target

    def tid_of(self, iqn: str) -> int:
        return self.get(iqn).tid

    def new(self, iqn: str, tid: Optional[int] = None) -> tuple[int, bool]:
        """Create a target; without a TID, the lowest free one >= BASE_TID.
        Returns (TID, created): an existing target of that name is kept. A TID
        taken meanwhile by someone else is tried again with another one."""
        names.validate(iqn)
        for _attempt in range(NEW_TARGET_ATTEMPTS):
            targets = self.list()
            existing = tgt.find(targets, iqn)
            if existing is not None:
                if tid is not None and existing.tid != tid:
                    raise OneIscsiError(f"target {iqn} already exists on {self.host} with TID {existing.tid}")
                return existing.tid, False
            if tid is not None and any(target.tid == tid for target in targets):
                raise OneIscsiError(f"TID {tid} is already used on {self.host}")
            chosen = tid or tgt.lowest_free_tid(targets, self.cfg.base_tid)
            try:
                self.session.run(tgt.new_target(chosen, iqn))
                return chosen, True
            except CommandError as err:
                if tgt.ALREADY_EXISTS not in err.stderr:
                    raise self._explain(err, chosen) from None
        raise OneIscsiError(f"no free TID for {iqn} on {self.host} after {NEW_TARGET_ATTEMPTS} attempts")

    def bind_all(self, tid: int) -> None:
        self._tgtadm(tgt.bind_all(tid), tid=tid)

    def allow(self, tid: int, spec: tgtconf.TargetSpec) -> None:
        """Bind the spec's initiator addresses and names, and its CHAP user."""
        for address in spec.addresses:
            self._tgtadm(tgt.bind_address(tid, address), tid=tid)
        for name in spec.initiator_names:
            self._tgtadm(tgt.bind_initiator_name(tid, name), tid=tid)
        if spec.chap_user:
            try:
                self.session.run(tgt.new_account(spec.chap_user, Secret(spec.chap_password)))
            except CommandError as err:
                if tgt.ACCOUNT_EXISTS not in err.stderr:
                    raise self._explain(err, tid) from None
            self._tgtadm(tgt.bind_account(tid, spec.chap_user), tid=tid)

    def bind_lun(self, tid: int, device: str, lun: int = 1) -> None:
        if not device.startswith("/"):
            raise InvalidInput(f"backing store must be an absolute path, got {device!r}")
        try:
            self.session.run(tgt.new_lun(tid, device, lun))
        except CommandError as err:
            if "invalid request" in err.stderr:
                err.hint = f"cannot add {device} as LUN {lun} of TID {tid} (missing device or LUN in use?)"
            raise self._explain(err, tid) from None

    def resolve_tid(self, tid_or_iqn: str) -> int:
        """A TID given as a number, or the TID of exactly that IQN."""
        if tid_or_iqn.isascii() and tid_or_iqn.isdigit():
            tid = int(tid_or_iqn)
            if tid < 1:
                raise InvalidInput(f"TID must be a positive integer, got {tid_or_iqn!r}")
            return tid
        return self.tid_of(tid_or_iqn)

    def delete(self, tid: int, force: bool = False) -> None:
        self._tgtadm(tgt.delete_target(tid, force), tid=tid)

    def delete_and_forget(self, tid_or_iqn: str, force: bool = False) -> None:
        """Delete a target given by TID or exact IQN, and its config file."""
        tid = None
        if tid_or_iqn.isascii() and tid_or_iqn.isdigit():
            tid = self.resolve_tid(tid_or_iqn)
        else:
            names.validate(tid_or_iqn)  # refused before anything runs
        targets = self.list()
        if tid is None:
            found = tgt.find(targets, tid_or_iqn)
            if found is None:
                raise NotFound(f"no target named {tid_or_iqn} on {self.host}")
            tid = found.tid
        iqn = next((target.iqn for target in targets if target.tid == tid), None)
        self.delete(tid, force)
        if iqn is not None:
            self.forget(iqn)

    def save(self, spec: tgtconf.TargetSpec) -> None:
        """Write the target's persistence file (and, once, the include of CONF_DIR)."""
        conf_dir = self.cfg.conf_dir
        commands = tgtconf.write(tgtconf.path(conf_dir, spec.iqn), tgtconf.render(spec))
        include = tgtconf.include_path(conf_dir)
        try:
            self.session.run(["test", "-e", include], query=True)
        except CommandError:
            commands[:0] = tgtconf.write(include, f"include {conf_dir.rstrip('/')}/*.conf\n", mode="0644")
        for argv in commands:
            self.session.run(argv)

    def forget(self, iqn: str) -> None:
        for argv in tgtconf.remove(tgtconf.path(self.cfg.conf_dir, iqn)):
            self.session.run(argv)

    def export(self, spec: tgtconf.TargetSpec) -> tuple[int, bool]:
        """Create the target of spec with its LUNs and access rules; an
        existing target with the same backing stores is kept as it is."""
        tid, created = self.new(spec.iqn)
        if not created:
            self.check_same(spec)
            return tid, False
        self.allow(tid, spec)
        for lun, store in enumerate(spec.backing_stores, 1):
            self.bind_lun(tid, store, lun)
        return tid, True

    def check_same(self, spec: tgtconf.TargetSpec) -> None:
        """An existing target of spec's name must have spec's LUNs."""
        stores = tuple(lun.backing_store for lun in self.get(spec.iqn).luns)
        if stores != spec.backing_stores:
            raise OneIscsiError(f"target {spec.iqn} already exists on {self.host} with other LUNs")

    def restore(self) -> tuple[list[str], list[str]]:
        """Create again every target saved in CONF_DIR that tgtd does not have.
        Returns (restored, already present) IQNs."""
        try:
            listing = self.session.run(tgtconf.list_files(self.cfg.conf_dir), query=True)
        except CommandError as err:
            if "No such file" in err.stderr:
                return [], []
            raise
        restored, present = [], []
        for name in sorted(listing.split()):
            spec = tgtconf.parse(self.session.run(
                tgtconf.read(tgtconf.path(self.cfg.conf_dir, name[:-len(".conf")])), query=True))
            _, created = self.export(spec)
            (restored if created else present).append(spec.iqn)
        return restored, present
