"""Operations on the target server's tgtd, through a Session.

A target is one-iscsi's when CONF_DIR holds its saved file (whatever its
name): that file is what `target restore` and tgt's start-up bring back.
Every change by hand to one of them goes to tgtd and to its file, the new
file checked by the rules of values.py before anything runs, and taken back
in tgtd if the file cannot be written. A target one-iscsi did not make is
changed only when forced, and then in tgtd alone: its owner keeps its
configuration.

Finding one of them takes no listing of every target (320 ms in tgtd alone
at 4000 targets): its saved file records its TID, and tgtd's mark on that
TID (tgt.MARK) says whether the target there is the one one-iscsi made under
that name. A target without such a file or mark (another's, one saved by an
earlier version, or made anew by tgt's start-up) is looked up in the full
listing, by its exact name, and marked again when its file records its TID.
A new target takes the next TID tgtd has free from where the last one
allocated left off (a hint file beside LOCK_FILE), tgtd refusing a TID or
name it has: no listing there either.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

from . import names, tgt, tgtconf, values
from .command import Command, command
from .errors import AlreadyExists, CommandError, InvalidInput, NotFound, OneIscsiError
from .run import Session
from .undo import Undo

NEW_TARGET_ATTEMPTS = 10
SAVED_BATCH = 500  # saved files read by one cat
# a change in tgtd, and the command that takes it back (None: nothing can)
Change = tuple[Command, Optional[Command]]


@dataclass(frozen=True)
class Listed:
    """A target of tgtd, and whether it is one-iscsi's (CONF_DIR holds its file)."""
    target: tgt.Target
    managed: bool

    def as_dict(self) -> dict:
        data = self.target.as_dict()
        return {"tid": data.pop("tid"), "iqn": data.pop("iqn"), "managed": self.managed, **data}


class TargetServer:
    def __init__(self, session: Session):
        if session.cfg.target != "tgt":  # not tgtadm's to talk to a LIO target server
            raise OneIscsiError(f"this needs tgt on {session.host}, whose TARGET is {session.cfg.target}")
        self.session = session
        self.host = session.host
        self.cfg = session.cfg

    def list(self) -> list[tgt.Target]:
        return tgt.parse_show(self.session.run(tgt.show_targets()))

    def find(self, iqn: str, sessions: bool = False) -> Optional[tgt.Target]:
        """The target named exactly iqn, or None. One of one-iscsi's, marked
        (see the module's docstring), comes without listing every target: its
        TID and name, its LUNs as its saved file has them (size 0: unknown,
        no ACL or accounts: ask resolve() for those) and, with sessions, its
        sessions. Any other comes from the full listing, whole."""
        return self._find(names.validate(iqn), self._saved_text(iqn), sessions)

    def _find(self, iqn: str, text: Optional[str], sessions: bool = False) -> Optional[tgt.Target]:
        """find(), given the text of the target's saved file (None: none)."""
        spec = self._readable(iqn, text)
        if spec is not None and spec.tid and self._mark_of(spec.tid) == iqn:
            return self._marked(spec, sessions)
        found = tgt.find(self.list(), iqn)
        if found is not None and spec is not None and found.tid == spec.tid:
            self._mark_all([(found.tid, iqn)])
        return found

    def _readable(self, iqn: str, text: Optional[str]) -> Optional[tgtconf.TargetSpec]:
        """The spec in a saved file's text; None without a file, or when it
        is not in the form one-iscsi writes (the listing will tell)."""
        if text is None:
            return None
        try:
            return tgtconf.parse(text, tgtconf.path(self.cfg.conf_dir, iqn))
        except InvalidInput:
            return None

    def _mark_of(self, tid: int) -> Optional[str]:
        """The name TID is marked with ('' if none); None if tgtd has no such TID."""
        try:
            return tgt.parse_mark(self.session.run(tgt.show_target(tid)))
        except NotFound:
            return None

    def _marked(self, spec: tgtconf.TargetSpec, sessions: bool) -> tgt.Target:
        luns = tuple(tgt.Lun(number, store, 0, "disk") for number, store in spec.luns)
        return tgt.Target(spec.tid, spec.iqn, luns, sessions=self.sessions(spec.tid) if sessions else ())

    def sessions(self, tid: int) -> tuple[tgt.Nexus, ...]:
        """The initiators logged in to a target, from its connections alone."""
        return tgt.parse_connections(self.session.run(tgt.show_connections(tid)))

    def get(self, iqn: str, sessions: bool = False) -> tgt.Target:
        target = self.find(iqn, sessions)
        if target is None:
            raise NotFound(f"no target named {iqn} on {self.host}")
        return target

    def tid_of(self, iqn: str) -> int:
        return self.get(iqn).tid

    def new(self, iqn: str, tid: Optional[int] = None) -> tuple[int, bool]:
        """Create a target (marked); without a TID, the next one tgtd has free
        from the hint left by the last one allocated (no hint: one more than
        the highest in use, at least BASE_TID). Returns (TID, created): an
        existing target of that name is kept."""
        names.validate(iqn)
        start = tid or self._hint()
        for _attempt in range(NEW_TARGET_ATTEMPTS):
            if start is None:
                start = tgt.next_free_tid(self.list(), self.cfg.base_tid)
            outcome, at = self._make(iqn, start, automatic=tid is None)
            if outcome == "new":
                return at, True
            if outcome == "taken" and tid is None:  # a run of TIDs in use: start after the highest
                start = None
                continue
            existing = self.find(iqn)
            if existing is not None:
                if tid is not None and existing.tid != tid:
                    raise OneIscsiError(f"target {iqn} already exists on {self.host} with TID {existing.tid}")
                return existing.tid, False
            if outcome == "taken":
                raise OneIscsiError(f"TID {tid} is already used on {self.host}")
            # the name was there a moment ago and is gone: try again
        raise OneIscsiError(f"no free TID for {iqn} on {self.host} after {NEW_TARGET_ATTEMPTS} attempts")

    def _make(self, iqn: str, start: int, automatic: bool) -> tuple[str, int]:
        """Run tgt.NEW_TARGET from start (automatic: trying the TIDs after it,
        and leaving the hint); its outcome."""
        tgtadm = self.session.runner.resolve(command("tgtadm", privileged=True))
        out = self.session.run(tgt.new_target_from(start, self.cfg.base_tid, iqn, tgtadm,
                                                   tries=tgt.NEW_TARGET_TRIES if automatic else 1,
                                                   hint=self._hint_file() if automatic else ""))
        if not out and self.session.runner.dry_run:
            return "new", start
        return tgt.parse_new(out)

    def _hint_file(self) -> str:
        """Where NEW_TARGET leaves the next TID to try: beside LOCK_FILE, which
        every allocation holds (gone at boot: then one listing starts it again)."""
        return f"{self.cfg.lock_file}.next-tid"

    def _hint(self) -> Optional[int]:
        try:
            return tgt.parse_hint(self.session.run(tgt.read_hint(self._hint_file())), self.cfg.base_tid)
        except NotFound:
            return None

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
        """Delete a target given by TID or exact IQN, and its saved file. force:
        even with sessions, even a target one-iscsi did not make. One of
        one-iscsi's is found as find() finds it, by its TID or name."""
        wanted = parse_target(tid_or_iqn)
        if isinstance(wanted, int):
            target, text = self._with_tid(wanted)
        else:
            text = self._saved_text(wanted)
            target = self._find(wanted, text)
            if target is None:
                raise NotFound(f"no target named {wanted} on {self.host}")
        if text is None and not force:
            raise self._not_owned(target, "delete")
        self.delete(target.tid, force)
        if text is not None:
            self.forget(target.iqn)

    def _with_tid(self, tid: int) -> tuple[tgt.Target, Optional[str]]:
        """The target with that TID, and the text of its saved file (None: none)."""
        mark = self._mark_of(tid)
        if mark is None:
            raise NotFound(f"no target with TID {tid} on {self.host}")
        text = self._saved_text(mark) if _is_target_name(mark) else None  # a mark set by hand names no file
        spec = self._readable(mark, text)
        if spec is not None and spec.tid == tid:
            return self._marked(spec, sessions=False), text
        target = self.resolve(str(tid))
        return target, text if target.iqn == mark else self._saved_text(target.iqn)

    def resolve(self, tid_or_iqn: str, targets: Optional[list[tgt.Target]] = None) -> tgt.Target:
        """The target given by TID or exact IQN (refused before anything runs
        if it is neither); NotFound if tgtd has none."""
        wanted = parse_target(tid_or_iqn)
        targets = self.list() if targets is None else targets
        if isinstance(wanted, int):
            found = tgt.find_tid(targets, wanted)
            if found is None:
                raise NotFound(f"no target with TID {wanted} on {self.host}")
            return found
        found = tgt.find(targets, wanted)
        if found is None:
            raise NotFound(f"no target named {wanted} on {self.host}")
        return found

    def select(self, tid_or_iqn: Optional[str] = None) -> list[tgt.Target]:
        """Every target, or the one given by TID or IQN."""
        return [self.resolve(tid_or_iqn)] if tid_or_iqn else self.list()

    def overview(self, tid_or_iqn: Optional[str] = None) -> list[Listed]:
        """Every target (or the one given), and whether one-iscsi made it."""
        targets = self.select(tid_or_iqn)
        saved = self.saved_iqns()
        return [Listed(target, target.iqn in saved) for target in targets]

    def create(self, iqn: str, tid: Optional[int] = None) -> tuple[int, bool]:
        """new(), and a target made here is saved as one-iscsi's, with its TID,
        no LUN and no initiator allowed yet. A target saved but missing from
        tgtd (a restart) is refused: `target restore` brings it back whole."""
        spec = tgtconf.check(tgtconf.TargetSpec(names.validate(iqn), (), ()), f"target {iqn!r}")
        text = self._saved_text(iqn)
        if text is not None:
            found = self._find(iqn, text)
            if found is None:
                raise OneIscsiError(f"target {iqn} is saved on {self.host} but not in tgtd: bring it back with "
                                    f"`one-iscsi -H {self.host} target restore`")
            if tid is not None and found.tid != tid:
                raise OneIscsiError(f"target {iqn} already exists on {self.host} with TID {found.tid}")
            return found.tid, False
        tid, created = self.new(iqn, tid)
        if created:
            undo = Undo(self.host)
            undo.push(f"deleting target {iqn}", lambda: self.delete(tid, force=True))
            undo.step("writing the target's config file", lambda: self.save(spec.with_tid(tid)))
        return tid, created

    def add_lun(self, tid_or_iqn: str, device: str, lun: int = 1, force: bool = False) -> list[str]:
        """Add device as LUN lun of a target, and to its saved file. force: a
        target one-iscsi did not make, a device another target has. Returns notes."""
        if not device.startswith("/"):
            raise InvalidInput(f"backing store must be an absolute path, got {device!r}")
        check_lun(lun)
        targets = self.list()
        target = self.resolve(tid_or_iqn, targets)
        spec = self._owned_spec(target, force)
        # what goes into a saved file passes the rules of values.py; tgtd alone takes any path as one word
        store = checked("backing store", values.path, device) if spec else device
        saved = dict(spec.luns) if spec else {}
        name = _named(target, self.host)
        taken = next((found for found in target.luns if found.lun == lun), None)
        if taken is not None:
            raise OneIscsiError(f"LUN {lun} of {name} is in use by {taken.backing_store}: choose another --lun")
        if saved.get(lun, store) != store:
            raise OneIscsiError(f"LUN {lun} of {name} is saved with {saved[lun]}, which tgtd lacks: "
                                f"unbind LUN {lun} first")
        other = _lun_of(targets, store)
        if other is not None and not force:
            raise OneIscsiError(f"{store} is already LUN {other[1].lun} of {_named(other[0], self.host)}: "
                                "one backing store, one target (--force to bind it anyway)")
        if not self._exists(store):
            raise NotFound(f"no such file or device: {store} on {self.host}")
        changed = spec.with_luns({**saved, lun: store}.items()) if spec else None
        self._apply(target, spec, changed, [(tgt.new_lun(target.tid, store, lun), tgt.delete_lun(target.tid, lun))])
        return self._foreign_note(target, spec)

    def remove_lun(self, tid_or_iqn: str, lun: int = 1, force: bool = False) -> list[str]:
        """Remove LUN lun of a target, and from its saved file. force: even
        with sessions, even a target one-iscsi did not make. Returns notes."""
        check_lun(lun)
        target = self.resolve(tid_or_iqn)
        spec = self._owned_spec(target, force)
        saved = dict(spec.luns) if spec else {}
        current = next((found for found in target.luns if found.lun == lun), None)
        if current is None and lun not in saved:
            raise NotFound(f"{_named(target, self.host)} has no LUN {lun}")
        if current is not None and target.sessions and not force:
            raise OneIscsiError(f"{_named(target, self.host)} has sessions ({', '.join(target.initiators)}): "
                                "log them out first, or use --force")
        changes = [(tgt.delete_lun(target.tid, lun), tgt.new_lun(target.tid, current.backing_store, lun))] \
            if current is not None else []
        changed = spec.with_luns((number, store) for number, store in spec.luns if number != lun) if spec else None
        self._apply(target, spec, changed, changes)
        return self._foreign_note(target, spec)

    def allow_initiators(self, tid_or_iqn: str, initiators: Sequence[str], force: bool = False) -> list[str]:
        """Add initiators (addresses, networks, names, ALL) to a target's ACL
        and saved file. Returns notes."""
        wanted = checked_initiators(initiators)
        target = self.resolve(tid_or_iqn)
        spec = self._owned_spec(target, force)
        allowed = _acl(target)
        new = [initiator for initiator in wanted if initiator not in allowed]
        changed = spec.with_initiators([*spec.initiators, *wanted]) if spec else None
        self._apply(target, spec, changed, [(_bind(target.tid, i), _unbind(target.tid, i)) for i in new])
        acl = [*allowed, *new]
        notes = [f"{initiator} was allowed already" for initiator in wanted if initiator in allowed]
        if "ALL" in acl and len(acl) > 1:
            notes.append(f"{target.iqn} lets every initiator in (ALL): the other entries restrict nothing "
                         f"until ALL is removed")
        return notes + self._foreign_note(target, spec)

    def deny_initiators(self, tid_or_iqn: str, initiators: Sequence[str], force: bool = False) -> list[str]:
        """Remove initiators from a target's ACL and saved file. Returns notes."""
        wanted = checked_initiators(initiators)
        target = self.resolve(tid_or_iqn)
        spec = self._owned_spec(target, force)
        known = {*_acl(target), *(spec.initiators if spec else ())}
        missing = [initiator for initiator in wanted if initiator not in known]
        if missing:
            raise NotFound(f"{missing[0]} is not in the ACL of {_named(target, self.host)}")
        changes = [(_unbind(target.tid, i), _bind(target.tid, i)) for i in wanted if i in target.acl]
        changed = spec.with_initiators(i for i in spec.initiators if i not in wanted) if spec else None
        self._apply(target, spec, changed, changes)
        left = [initiator for initiator in _acl(target) if initiator not in wanted]
        notes = [] if left else [f"{target.iqn} now lets no initiator in"]
        return notes + self._foreign_note(target, spec)

    def acl(self, tid_or_iqn: str) -> tuple[str, ...]:
        """The initiators tgtd lets use a target."""
        return _acl(self.resolve(tid_or_iqn))

    def set_chap(self, tid_or_iqn: str, user: str, password: str, force: bool = False) -> list[str]:
        """Make user (with password) the one CHAP account of a target, in
        tgtd and its saved file. tgtd keeps one password per user, shared by
        the targets bound to it: an existing user is taken only with the
        password one-iscsi knows it by. Returns notes."""
        check_chap(user, password)
        targets = self.list()
        target = self.resolve(tid_or_iqn, targets)
        spec = self._owned_spec(target, force)
        changes = self._account_for(user, password, targets)
        bound = tgt.users_of(target)
        if user not in bound:
            changes.append((tgt.bind_account(target.tid, user), tgt.unbind_account(target.tid, user)))
        # the new account is bound before the old ones go: the target is never without CHAP
        changes += [(tgt.unbind_account(target.tid, other), tgt.bind_account(target.tid, other))
                    for other in bound if other != user]
        self._apply(target, spec, spec.with_chap(user, password) if spec else None, changes)
        return self._foreign_note(target, spec)

    def unset_chap(self, tid_or_iqn: str, force: bool = False) -> list[str]:
        """Unbind every CHAP account of a target, in tgtd and its saved file. Returns notes."""
        target = self.resolve(tid_or_iqn)
        spec = self._owned_spec(target, force)
        users = tgt.users_of(target)
        if not users and not (spec and spec.chap_user):
            return [f"{target.iqn} has no CHAP account: nothing changed"]
        changes = [(tgt.unbind_account(target.tid, user), tgt.bind_account(target.tid, user)) for user in users]
        self._apply(target, spec, spec.with_chap() if spec else None, changes)
        return self._foreign_note(target, spec)

    def _account_for(self, user: str, password: str, targets: list[tgt.Target]) -> list[Change]:
        """The changes that give tgtd the account user with password."""
        if user not in tgt.parse_accounts(self.session.run(tgt.show_accounts())):
            return [(tgt.new_account(user, password), tgt.delete_account(user))]
        bound = [target for target in targets if user in tgt.users_of(target)]
        if not bound:  # an account no target uses lets nobody in anywhere: made again with this password
            return [(tgt.delete_account(user), None), (tgt.new_account(user, password), tgt.delete_account(user))]
        known, whose = self._password_of(user, bound)
        if known == password:
            return []
        if known:  # tgtd changes a password only by deleting the account: its targets would be open meanwhile
            raise OneIscsiError(f"CHAP user {user} on {self.host} has another password (that of {whose}), which "
                                "tgtd cannot change without leaving its targets open: give that password, "
                                "or choose another user")
        raise OneIscsiError(f"CHAP user {user} on {self.host} is bound to {_named(bound[0], self.host)} with a "
                            "password one-iscsi does not know: choose another user")

    def _password_of(self, user: str, bound: list[tgt.Target]) -> tuple[str, str]:
        """The password one-iscsi knows user by, and where from: the
        configuration's CHAP account, else the saved file of a target bound to it."""
        if user == self.cfg.chap_user:
            return self.cfg.chap_password, "CHAP_PASSWORD of the configuration"
        for target in bound:
            spec = self.saved_spec(target.iqn)
            if spec is not None and spec.chap_user == user:
                return spec.chap_password, f"target {target.iqn}"
        return "", ""

    def _owned_spec(self, target: tgt.Target, force: bool) -> Optional[tgtconf.TargetSpec]:
        """The saved spec of target; None for a target one-iscsi did not make,
        which only force lets change."""
        spec = self.saved_spec(target.iqn)
        if spec is None and not force:
            raise self._not_owned(target, "change")
        return spec

    def _not_owned(self, target: tgt.Target, verb: str) -> OneIscsiError:
        file = tgtconf.path(self.cfg.conf_dir, target.iqn)
        return OneIscsiError(f"{_named(target, self.host)} was not made by one-iscsi (no {file}): "
                             f"use --force to {verb} it anyway")

    def _foreign_note(self, target: tgt.Target, spec: Optional[tgtconf.TargetSpec]) -> list[str]:
        if spec is not None:
            return []
        return [f"{target.iqn} is not one-iscsi's: changed in tgtd only, its own configuration is not"]

    def _apply(self, target: tgt.Target, spec: Optional[tgtconf.TargetSpec],
               changed: Optional[tgtconf.TargetSpec], changes: Iterable[Change]) -> None:
        """Make changes in tgtd, then save changed when the target is
        one-iscsi's (spec: its file as it was); changed is checked before
        anything runs, and a failure takes back what was done."""
        if spec is not None:  # the file records the TID the target has (an earlier version's did not)
            changed = tgtconf.check(changed.with_tid(target.tid), f"target {target.iqn!r}")
        undo = Undo(self.host)
        for cmd, back in changes:
            undo.step(None, lambda cmd=cmd: self.session.run(cmd))
            if back is not None:
                undo.push(" ".join(back.masked()), lambda back=back: self.session.run(back))
        if spec is not None and changed != spec:
            undo.step("writing the target's config file", lambda: self.save(changed))

    def save(self, *specs: tgtconf.TargetSpec) -> None:
        """Write the targets' persistence files (and, once, the include of CONF_DIR)."""
        conf_dir = self.cfg.conf_dir
        commands = tgtconf.write_all([(tgtconf.path(conf_dir, spec.iqn), tgtconf.render(spec)) for spec in specs])
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
        """The target as its persistence file has it (access rules, CHAP);
        NotFound without a file."""
        spec = self.saved_spec(iqn)
        if spec is None:
            raise NotFound(f"no saved configuration of target {iqn} on {self.host} "
                           f"({tgtconf.path(self.cfg.conf_dir, iqn)})")
        return spec

    def saved_spec(self, iqn: str) -> Optional[tgtconf.TargetSpec]:
        """The target as its saved file has it; None without a file. A file
        not in the form one-iscsi writes is an error naming it."""
        text = self._saved_text(iqn)
        if text is None:
            return None
        try:
            return tgtconf.parse(text, tgtconf.path(self.cfg.conf_dir, iqn))
        except InvalidInput as err:
            raise OneIscsiError(f"{err} (not in the form one-iscsi writes: mend or remove it)") from None

    def _saved_text(self, iqn: str) -> Optional[str]:
        return _text_of(self.session, tgtconf.path(self.cfg.conf_dir, iqn))

    def saved_iqns(self) -> frozenset[str]:
        """The names of the targets CONF_DIR holds a file of."""
        return frozenset(name.removesuffix(".conf") for name, _size in self._saved_files())

    def _saved_files(self) -> list[tuple[str, int]]:
        """(name, size) of each saved file, by name."""
        try:
            return tgtconf.parse_files(self.session.run(tgtconf.list_files(self.cfg.conf_dir)))
        except NotFound:
            return []

    def read_saved(self) -> list[tuple[str, str, Optional[str]]]:
        """(IQN, file, text) of every saved file, by name: SAVED_BATCH files
        read by one cat and cut by their sizes; text None for a file gone
        meanwhile. A batch whose files changed meanwhile is read again file
        by file."""
        files = self._saved_files()
        paths = [posixpath.join(self.cfg.conf_dir, name) for name, _size in files]
        texts = read_files(self.session, list(zip(paths, (size for _name, size in files))))
        return [(name.removesuffix(".conf"), path, text) for (name, _size), path, text in zip(files, paths, texts)]

    def forget(self, iqn: str) -> None:
        self.session.run(tgtconf.remove(tgtconf.path(self.cfg.conf_dir, iqn)))

    def export(self, spec: tgtconf.TargetSpec, tid: Optional[int] = None) -> tuple[int, bool]:
        """Create the target of spec (at tid, if given) with its LUNs and
        access rules; an existing target with the same backing stores is kept
        as it is. A target made here whose rules or LUNs fail is deleted again."""
        tid, created = self.new(spec.iqn, tid)
        if not created:
            self.check_same(spec)
            return tid, False
        undo = Undo(self.host)
        undo.push(f"deleting target {spec.iqn}", lambda: self.delete(tid, force=True))
        undo.step(None, lambda: self._fill(tid, spec))
        return tid, True

    def _fill(self, tid: int, spec: tgtconf.TargetSpec) -> None:
        self.allow(tid, spec)
        for lun, store in spec.luns:
            self.bind_lun(tid, store, lun)

    def delete_if_empty(self, iqn: str) -> bool:
        """Delete a target of that name with no LUN and no session: what
        tgt's start-up leaves of a saved target whose backing store it could
        not open. True if there was one."""
        found = self.get(iqn, sessions=True)
        if found.luns or found.sessions:
            return False
        self.delete(found.tid)
        return True

    def check_same(self, spec: tgtconf.TargetSpec, found: Optional[tgt.Target] = None) -> None:
        """An existing target of spec's name (found, or looked up) must have spec's LUNs."""
        luns = sorted((lun.lun, lun.backing_store) for lun in (found or self.get(spec.iqn)).luns)
        if luns != sorted(spec.luns):
            raise OneIscsiError(f"target {spec.iqn} already exists on {self.host} with other LUNs")

    def restore(self) -> tuple[list[str], list[str], list[tuple[str, str]]]:
        """Create again every target saved in CONF_DIR that tgtd does not have,
        at the TID its file records when tgtd has it free; the files are read
        in a few cats and tgtd listed once. A target that cannot be made is
        deleted again and the others still come back. Each file then records
        the TID its target has, and the target is marked. Returns the IQNs
        restored, the IQNs already present, and the failures: (file or IQN, a
        one-line message naming it)."""
        restored, present, failed = [], [], {}  # failed: by the place of the file
        specs = []
        for place, (_iqn, file, text) in enumerate(self.read_saved()):
            if text is None:  # removed meanwhile
                continue
            try:
                spec = tgtconf.parse(text, file)
                if tgtconf.path(self.cfg.conf_dir, spec.iqn) != file:
                    raise InvalidInput(f"{file} holds target {spec.iqn}, not the one of its name")
            except OneIscsiError as err:
                failed[place] = (file, _one_line(err))
                continue
            specs.append((place, spec))
        listed = {target.iqn: target for target in (self.list() if specs else ())}
        taken = {target.tid for target in listed.values()}
        marks, moved = [], []  # (TID, IQN) of the targets present; (place, spec) of the files to record TIDs in
        for place, spec in specs:
            found = listed.get(spec.iqn)
            try:
                if found is None:
                    tid, created = self.export(spec, spec.tid if spec.tid and spec.tid not in taken else None)
                else:
                    self.check_same(spec, found)
                    tid, created = found.tid, False
                    marks.append((tid, spec.iqn))
            except OneIscsiError as err:
                failed[place] = _failure(spec.iqn, err)
                continue
            taken.add(tid)
            (restored if created else present).append(spec.iqn)
            if tid != spec.tid:
                moved.append((place, spec.with_tid(tid)))
        unrecorded = self._record(moved)  # before the marks: files first, the marks only spare listings
        failed.update(unrecorded)
        unsaved = {iqn for iqn, _reason in unrecorded.values()}
        restored, present = ([iqn for iqn in found if iqn not in unsaved] for found in (restored, present))
        self._mark_all(marks)
        return restored, present, [failed[place] for place in sorted(failed)]

    def _mark_all(self, marks: list[tuple[int, str]]) -> None:
        """Mark (TID, IQN) pairs, targets the listing showed at the TIDs their
        files record, SAVED_BATCH at a time."""
        if self.session.runner.dry_run:  # the marks change nothing one sees: not a change to print
            return
        tgtadm = self.session.runner.resolve(command("tgtadm", privileged=True))
        for first in range(0, len(marks), SAVED_BATCH):
            self.session.run(tgt.mark_targets(marks[first:first + SAVED_BATCH], tgtadm))

    def _record(self, moved: list[tuple[int, tgtconf.TargetSpec]]) -> dict[int, tuple[str, str]]:
        """Save the files of targets whose TID changed, all in one go; when
        that fails, one by one. The failures, by place."""
        if not moved:
            return {}
        try:
            self.save(*(spec for _place, spec in moved))
            return {}
        except OneIscsiError:
            failed = {}
            for place, spec in moved:
                try:
                    self.save(spec)
                except OneIscsiError as err:
                    failed[place] = _failure(spec.iqn, err)
            return failed


def _failure(iqn: str, err: OneIscsiError) -> tuple[str, str]:
    """A restore failure: (IQN, a one-line message naming it)."""
    reason = _one_line(err)
    return iqn, reason if iqn in reason else f"{iqn}: {reason}"


def read_files(session: Session, files: list[tuple[str, int]]) -> list[Optional[str]]:
    """The texts of files given with their sizes: SAVED_BATCH files read by
    one cat and cut by their sizes; None for a file gone meanwhile. A batch
    whose files changed meanwhile is read again file by file."""
    texts: list[Optional[str]] = []
    for first in range(0, len(files), SAVED_BATCH):
        batch = files[first:first + SAVED_BATCH]
        try:
            cut = tgtconf.split(session.run(tgtconf.read(*(path for path, _size in batch))),
                                [size for _path, size in batch])
        except NotFound:
            cut = None
        texts += cut if cut is not None else [_text_of(session, path) for path, _size in batch]
    return texts


def _text_of(session: Session, file: str) -> Optional[str]:
    try:
        return session.run(tgtconf.read(file))
    except NotFound:
        return None


def _is_target_name(text: str) -> bool:
    try:
        names.validate(text)
    except InvalidInput:
        return False
    return True


def _one_line(err: OneIscsiError) -> str:
    return " ".join(str(err).split())


def parse_target(text: str) -> Union[int, str]:
    """A target as the command line names it: a TID (digits) or an exact IQN;
    InvalidInput if it is neither."""
    if text.isascii() and text.isdigit():
        return parse_tid(text)
    return names.validate(text)


def _named(target: tgt.Target, host: str) -> str:
    return f"target {target.iqn} (TID {target.tid}) on {host}"


def _acl(target: tgt.Target) -> tuple[str, ...]:
    """The target's ACL without the address tgtconf writes for "nobody by
    address", which tgt's start-up binds (restore does not)."""
    return tuple(entry for entry in target.acl if entry != tgtconf.NO_ADDRESS)


def _lun_of(targets: list[tgt.Target], store: str) -> Optional[tuple[tgt.Target, tgt.Lun]]:
    """The target and LUN backed by store, if any."""
    return next(((target, lun) for target in targets for lun in target.luns if lun.backing_store == store), None)


def _bind(tid: int, initiator: str) -> Command:
    if tgtconf.is_initiator_name(initiator):
        return tgt.bind_initiator_name(tid, initiator)
    return tgt.bind_address(tid, initiator)


def _unbind(tid: int, initiator: str) -> Command:
    if tgtconf.is_initiator_name(initiator):
        return tgt.unbind_initiator_name(tid, initiator)
    return tgt.unbind_address(tid, initiator)


def checked(what: str, rule, value: str) -> str:
    """value by rule (values.py), else InvalidInput naming what it is."""
    try:
        return rule(value)
    except ValueError as err:
        raise InvalidInput(f"{what} {err}, got {value!r}") from None


def checked_initiators(initiators: Sequence[str]) -> list[str]:
    if not initiators:
        raise InvalidInput("name at least one initiator address, network or name (or ALL)")
    return [checked("initiator", values.initiator, initiator) for initiator in initiators]


def check_chap(user: str, password: str) -> None:
    if not user or not password:
        raise InvalidInput("CHAP needs a user and a password")
    checked("CHAP user", values.chap_user, user)
    try:
        values.chap_password(password)
    except ValueError as err:  # the password itself is never shown
        raise InvalidInput(f"CHAP password {err}") from None


def check_lun(lun: int) -> None:
    if not 1 <= lun <= values.MAX_LUN:
        raise InvalidInput(f"LUN must be from 1 to {values.MAX_LUN}, got {lun}")


def parse_tid(text: str) -> int:
    """A TID given on the command line: a positive integer tgtd takes."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= values.MAX_TID:
        raise InvalidInput(f"TID must be a positive integer up to {values.MAX_TID}, got {text!r}")
    return int(text)
