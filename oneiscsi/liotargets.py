"""The target commands on a LIO target server (TARGET=lio), through a
Session: what `target list`, `show`, `delete` and `restore` do there, with
the answers in the shape tgt's have (targets.Listed). (`status` and `gc`
read LIO in inventory.py.)

LIO has no TIDs: a target is given by its IQN, and listed with TID None. A
target is one-iscsi's when its name is one one-iscsi gives (BASE_IQN, then
host, VG and LV) and its LUN 1 is the storage object named after that
volume (VG.LV): what lio.create makes, and what `target restore` brings back
from the saved configuration. The others are changed only when forced.
"""
from __future__ import annotations

from typing import Optional

from . import lio, names
from .errors import InvalidInput, NotFound, OneIscsiError
from .run import Session
from .targets import Listed, parse_target
from .tgt import Target

# the TargetServer operations not done on LIO yet, refused by name
NOT_YET = {"create": "target new", "allow_initiators": "target acl add and bind-all",
           "deny_initiators": "target acl remove", "acl": "target acl list", "set_chap": "target chap set",
           "unset_chap": "target chap unset", "add_lun": "lun bind", "remove_lun": "lun unbind",
           "list": "lun list"}


class LioServer:
    def __init__(self, session: Session):
        self.session = session
        self.host = session.host
        self.cfg = session.cfg

    def __getattr__(self, name: str):
        if name in NOT_YET:
            raise OneIscsiError(f"`{NOT_YET[name]}` is not done on LIO target servers yet ({self.host} has "
                                "TARGET=lio): see LIO target servers in the README")
        raise AttributeError(name)

    def overview(self, iqn: Optional[str] = None) -> list[Listed]:
        """Every iSCSI target LIO has (or the one named), and whether it is one-iscsi's."""
        if iqn:
            return [self._listed(self._get(iqn))]
        answer = lio.answer(self.session.run(lio.list_targets()), self.host)
        return sorted((self._listed(lio.target(data)) for data in answer["targets"]), key=lambda e: e.target.iqn)

    def tid_of(self, iqn: str) -> int:
        raise InvalidInput(f"LIO has no TIDs ({self.host} has TARGET=lio): give targets by their IQN")

    def delete_and_forget(self, iqn: str, force: bool = False) -> None:
        """Delete the target, its storage objects and their saved entries;
        force: even with sessions, even a target one-iscsi did not make."""
        found = self._get(iqn)
        if not force and not self._managed(found):
            raise OneIscsiError(f"target {found.iqn} on {self.host} was not made by one-iscsi: not deleting it "
                                "(--force deletes it)")
        lio.answer(self.session.run(lio.delete(found.iqn, force=force)), self.host)

    def restore(self) -> tuple[list[str], list[str], list[tuple[str, str]]]:
        """Make again every target of one-iscsi's (BASE_IQN) that the saved
        configuration has and LIO does not, with its storage object. Returns
        the IQNs restored, those already there, and the failures (IQN, why)."""
        answer = lio.answer(self.session.run(lio.restore(f"{self.cfg.base_iqn}:")), self.host)
        return answer["restored"], answer["present"], [tuple(entry) for entry in answer["failed"]]

    def _get(self, iqn: str) -> Target:
        wanted = parse_target(iqn)
        if isinstance(wanted, int):
            self.tid_of(iqn)
        found = lio.found(self.session.run(lio.show(wanted)), self.host)
        if found is None:
            raise NotFound(f"no target named {wanted} on {self.host}")
        return found

    def _listed(self, target: Target) -> Listed:
        return Listed(target, self._managed(target))

    def _managed(self, target: Target) -> bool:
        try:
            name = names.parse(target.iqn)
        except names.InvalidName:
            return False
        lun_1 = [lun for lun in target.luns if lun.lun == 1]
        return name.base == self.cfg.base_iqn and len(lun_1) == 1 and \
            lio.object_name(lun_1[0].backing_store) == f"{name.vg}.{name.lv}"
