"""The target commands on a LIO target server (TARGET=lio), through a
Session: what `target` and `lun` do there, with the answers in the shape
tgt's have (targets.Listed); each change is one run of lioprogram.py,
all or nothing, saved. (`status` and `gc` read LIO in inventory.py.)

LIO has no TIDs: a target is given by its IQN, and listed with TID None.
A target is one-iscsi's when its name is one one-iscsi gives (BASE_IQN,
then host, VG and LV): what the driver and `target new` make, and what
`target restore` brings back from the saved configuration. The others are
changed only when forced. LIO lets initiators in by name only.
"""
from __future__ import annotations

from typing import Optional, Sequence

from . import lio, names, values
from .command import Command
from .errors import InvalidInput, NotFound, OneIscsiError
from .run import Session
from .targets import Listed, check_chap, check_lun, checked, checked_initiators, parse_target
from .tgt import Target



def ask(session: Session, request: Command) -> dict:
    """The program's answer to request, run in session; under --dry-run,
    where a change is only shown, an empty one."""
    text = session.run(request)
    if session.runner.dry_run and not request.query:
        return {}
    return lio.answer(text, session.host)


class LioServer:
    def __init__(self, session: Session):
        self.session = session
        self.host = session.host
        self.cfg = session.cfg

    def overview(self, iqn: Optional[str] = None) -> list[Listed]:
        """Every iSCSI target LIO has (or the one named), and whether it is one-iscsi's."""
        if iqn:
            return [self._listed(self._get(iqn))]
        answer = ask(self.session, lio.list_targets())
        return sorted((self._listed(lio.target(data)) for data in answer["targets"]), key=lambda e: e.target.iqn)

    def tid_of(self, iqn: str) -> int:
        raise InvalidInput(f"LIO has no TIDs ({self.host} has TARGET=lio): give targets by their IQN")

    def delete_and_forget(self, iqn: str, force: bool = False) -> None:
        """Delete the target, its storage objects and their saved entries;
        force: even with sessions, even a target one-iscsi did not make."""
        ask(self.session, lio.delete(self._owned(iqn, force, "not deleting it (--force deletes it)"), force=force))

    def restore(self) -> tuple[list[str], list[str], list[tuple[str, str]]]:
        """Make again every target of one-iscsi's (BASE_IQN) that the saved
        configuration has and LIO does not, with its storage object. Returns
        the IQNs restored, those already there, and the failures (IQN, why)."""
        answer = ask(self.session, lio.restore(f"{self.cfg.base_iqn}:"))
        return answer.get("restored", []), answer.get("present", []), [tuple(e) for e in answer.get("failed", [])]

    def create(self, iqn: str, tid: Optional[int] = None) -> tuple[str, bool]:
        """A target with TPG 1 and its portal, no LUN, nobody let in, saved:
        (its IQN, whether it was made here); an existing one is kept."""
        if tid is not None:
            self.tid_of(iqn)
        answer = self._change(lio.lower_case("target name", names.validate(iqn)), ["new"])
        return iqn, not answer.get("exists")

    def select(self, iqn: Optional[str] = None) -> list[Target]:
        """Every target, or the one named."""
        return [entry.target for entry in self.overview(iqn)]

    def acl(self, iqn: str) -> tuple[str, ...]:
        return self._get(iqn).acl

    def allow_initiators(self, iqn: str, initiators: Sequence[str], force: bool = False) -> list[str]:
        """Let initiator names (or ALL) in: node ACLs with every LUN mapped,
        or generate_node_acls. Returns notes."""
        wanted = _names_only(initiators)
        return self._change(self._owned(iqn, force), ["allow", wanted]).get("notes", [])

    def deny_initiators(self, iqn: str, initiators: Sequence[str], force: bool = False) -> list[str]:
        wanted = _names_only(initiators)
        name = self._owned(iqn, force)
        answer = self._change(name, ["deny", wanted])
        return [] if answer.get("target", {}).get("acl", True) else [f"{name} now lets no initiator in"]

    def set_chap(self, iqn: str, user: str, password: str, force: bool = False) -> list[str]:
        """Make user (with password) the CHAP account the target asks for:
        on each ACL, and on the TPG with ALL. Returns notes."""
        check_chap(user, password)
        self._change(self._owned(iqn, force), ["chap", user, password])
        return []

    def unset_chap(self, iqn: str, force: bool = False) -> list[str]:
        target = self._get(self._owned(iqn, force))  # its accounts
        if not target.accounts:
            return [f"{target.iqn} has no CHAP account: nothing changed"]
        self._change(target.iqn, ["chap", "", ""])
        return []

    def add_lun(self, iqn: str, device: str, lun: int = 1, force: bool = False) -> list[str]:
        """device (block device or file) as LUN lun, mapped to every ACL; its
        storage object named after it (VG.LV). force: a target one-iscsi did
        not make, a device another target has."""
        if not device.startswith("/"):
            raise InvalidInput(f"backing store must be an absolute path, got {device!r}")
        check_lun(lun)
        store = checked("backing store", values.path, device)
        self._change(self._owned(iqn, force), ["lun_add", lun, store, lio.object_name(store)], force=force)
        return []

    def remove_lun(self, iqn: str, lun: int = 1, force: bool = False) -> list[str]:
        """Remove LUN lun and its storage object (unless another target has
        it); refused with sessions unless force."""
        check_lun(lun)
        self._change(self._owned(iqn, force), ["lun_remove", lun], force=force)
        return []

    def _owned(self, iqn: str, force: bool, refusal: str = "use --force to change it anyway") -> str:
        """The target's name, refused unless one-iscsi's (by its name) or
        forced; whether LIO has it, the change itself answers."""
        name = self._name(iqn)
        if not force and not self._managed(name):
            raise OneIscsiError(f"target {name} on {self.host} was not made by one-iscsi: {refusal}")
        return name

    def _change(self, iqn: str, edit: list, force: bool = False) -> dict:
        return ask(self.session, lio.change(iqn, [edit], self.cfg.portal_port, self.cfg.lock_timeout, force))

    def _name(self, iqn: str) -> str:
        """A target as the command line names it: an IQN (LIO has no TIDs), in lower case."""
        wanted = parse_target(iqn)
        if isinstance(wanted, int):
            self.tid_of(iqn)
        return lio.lower_case("target name", wanted)

    def _get(self, iqn: str) -> Target:
        wanted = self._name(iqn)
        found = lio.found(self.session.run(lio.show(wanted)), self.host)
        if found is None:
            raise NotFound(f"no target named {wanted} on {self.host}")
        return found

    def _listed(self, target: Target) -> Listed:
        return Listed(target, self._managed(target.iqn))

    def _managed(self, iqn: str) -> bool:
        try:
            return names.parse(iqn).base == self.cfg.base_iqn
        except names.InvalidName:
            return False


def _names_only(initiators: Sequence[str]) -> list[str]:
    """Initiator names or ALL, checked: LIO has no address rules."""
    wanted = lio.names_only(checked_initiators(initiators))
    if "ALL" in wanted and len(wanted) > 1:
        raise InvalidInput("ALL stands alone: name it, or initiator names")
    return wanted


def server_for(session: Session):
    """The target commands of the session's target server: LIO's (TARGET=lio) or tgtd's."""
    from .targets import TargetServer

    return LioServer(session) if session.cfg.target == "lio" else TargetServer(session)
