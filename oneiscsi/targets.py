"""Operations on the target server's tgtd, through a Session."""
from __future__ import annotations

import posixpath
from typing import Optional

from . import names, tgt, tgtconf
from .errors import AlreadyExists, CommandError, InvalidInput, NotFound, OneIscsiError
from .run import Session
from .undo import Undo

NEW_TARGET_ATTEMPTS = 10


class TargetServer:
    def __init__(self, session: Session):
        self.session = session
        self.host = session.host
        self.cfg = session.cfg

    def list(self) -> list[tgt.Target]:
        return tgt.parse_show(self.session.run(tgt.show_targets()))

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
            except AlreadyExists:
                continue
        raise OneIscsiError(f"no free TID for {iqn} on {self.host} after {NEW_TARGET_ATTEMPTS} attempts")

    def bind_all(self, tid: int) -> None:
        self.session.run(tgt.bind_all(tid))

    def allow(self, tid: int, spec: tgtconf.TargetSpec) -> None:
        """Bind the spec's initiator addresses and names, and its CHAP user."""
        for address in spec.addresses:
            self.session.run(tgt.bind_address(tid, address))
        for name in spec.initiator_names:
            self.session.run(tgt.bind_initiator_name(tid, name))
        if spec.chap_user:
            try:
                self.session.run(tgt.new_account(spec.chap_user, spec.chap_password))
            except AlreadyExists:
                pass
            self.session.run(tgt.bind_account(tid, spec.chap_user))

    def bind_lun(self, tid: int, device: str, lun: int = 1) -> None:
        if not device.startswith("/"):
            raise InvalidInput(f"backing store must be an absolute path, got {device!r}")
        self.session.run(tgt.new_lun(tid, device, lun))

    def delete(self, tid: int, force: bool = False) -> None:
        self.session.run(tgt.delete_target(tid, force))

    def delete_and_forget(self, tid_or_iqn: str, force: bool = False) -> None:
        """Delete a target given by TID or exact IQN, and its config file."""
        tid = parse_tid(tid_or_iqn) if tid_or_iqn.isascii() and tid_or_iqn.isdigit() else None
        if tid is None:
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
        if not self._exists(include):
            commands[:0] = tgtconf.write(include, tgtconf.include(conf_dir), mode="0644")
        for cmd in commands:
            self.session.run(cmd)

    def _exists(self, path: str) -> bool:
        try:
            self.session.run(tgtconf.exists(path))
        except CommandError:
            return False
        return True

    def saved(self, iqn: str) -> tgtconf.TargetSpec:
        """The target as its persistence file has it (access rules, CHAP)."""
        file = tgtconf.path(self.cfg.conf_dir, iqn)
        if not self._exists(file):
            raise NotFound(f"no saved configuration of target {iqn} on {self.host} ({file})")
        return tgtconf.parse(self.session.run(tgtconf.read(file)), file)

    def forget(self, iqn: str) -> None:
        self.session.run(tgtconf.remove(tgtconf.path(self.cfg.conf_dir, iqn)))

    def export(self, spec: tgtconf.TargetSpec) -> tuple[int, bool]:
        """Create the target of spec with its LUNs and access rules; an
        existing target with the same backing stores is kept as it is. A
        target made here whose rules or LUNs fail is deleted again."""
        tid, created = self.new(spec.iqn)
        if not created:
            self.check_same(spec)
            return tid, False
        undo = Undo(self.host)
        undo.push(f"deleting target {spec.iqn}", lambda: self.delete(tid, force=True))
        undo.step(None, lambda: self._fill(tid, spec))
        return tid, True

    def _fill(self, tid: int, spec: tgtconf.TargetSpec) -> None:
        self.allow(tid, spec)
        for lun, store in enumerate(spec.backing_stores, 1):
            self.bind_lun(tid, store, lun)

    def delete_if_empty(self, iqn: str) -> bool:
        """Delete a target of that name with no LUN and no session: what
        tgt's start-up leaves of a saved target whose backing store it could
        not open. True if there was one."""
        found = self.get(iqn)
        if found.luns or found.sessions:
            return False
        self.delete(found.tid)
        return True

    def check_same(self, spec: tgtconf.TargetSpec) -> None:
        """An existing target of spec's name must have spec's LUNs."""
        stores = tuple(lun.backing_store for lun in self.get(spec.iqn).luns)
        if stores != spec.backing_stores:
            raise OneIscsiError(f"target {spec.iqn} already exists on {self.host} with other LUNs")

    def restore(self) -> tuple[list[str], list[str], list[tuple[str, str]]]:
        """Create again every target saved in CONF_DIR that tgtd does not have.
        A target that cannot be made is deleted again and the others still
        come back. Returns the IQNs restored, the IQNs already present, and
        the failures: (file or IQN, a one-line message naming it)."""
        try:
            listing = self.session.run(tgtconf.list_files(self.cfg.conf_dir))
        except NotFound:
            return [], [], []
        restored, present, failed = [], [], []
        for name in sorted(listing.splitlines()):
            file = posixpath.join(self.cfg.conf_dir, name)
            try:
                spec = tgtconf.parse(self.session.run(tgtconf.read(file)), file)
                if tgtconf.path(self.cfg.conf_dir, spec.iqn) != file:
                    raise InvalidInput(f"{file} holds target {spec.iqn}, not the one of its name")
            except OneIscsiError as err:
                failed.append((file, _one_line(err)))
                continue
            try:
                _, created = self.export(spec)
            except OneIscsiError as err:
                reason = _one_line(err)
                failed.append((spec.iqn, reason if spec.iqn in reason else f"{spec.iqn}: {reason}"))
                continue
            (restored if created else present).append(spec.iqn)
        return restored, present, failed


def _one_line(err: OneIscsiError) -> str:
    return " ".join(str(err).split())


def parse_tid(text: str) -> int:
    """A TID given on the command line: a positive integer."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise InvalidInput(f"TID must be a positive integer, got {text!r}")
    return int(text)
