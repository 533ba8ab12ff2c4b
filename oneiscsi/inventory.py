"""What a target server holds (`status`), and the clean-up of its orphans (`gc`).

status joins three sources read in one session: the targets of tgtd, the
target files one-iscsi saved (CONF_DIR, read in a few cats) and the volumes
of the pool (the LVs of VG_NAME, or the files of POOL_DIR/VG_NAME, named as
images and private copies are). An Entry is one volume with its target and
saved file, or a target or saved file without a volume, with what is amiss
(a saved file's recorded TID compared with the one tgtd has).

gc removes what a SIGKILL or a power cut in the middle of an action leaves:
a volume nobody exports and nothing saved (a `cp` killed before its target
was made), a saved file with neither target nor data, a saved target of
neither volume nor data. Each under its image's lock, checked again under
it; never an image another one-iscsi works on, a target with sessions, a
target without saved file, or anything not of this configuration's naming.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Mapping, Optional

from . import lio, names, storage, tgt, tgtconf
from .command import Command, command
from .config import Config
from .datastore import image_lock
from .errors import InvalidInput, NotFound, OneIscsiError
from .run import LOCK_BUSY_RC, Runner, Session
from .liotargets import ask
from .targets import TargetServer
from .units import whole_mib

LOCK_WAIT = 2.0  # seconds gc waits for an image's lock found free a moment before

# what may be amiss with an entry
NO_TARGET = "no-target"          # a volume without its target
NOT_SAVED = "not-saved"          # a target of ours without a saved file
NOT_IN_TGTD = "not-in-tgtd"      # a saved file whose target tgtd does not have
NO_LUN = "no-lun"                # a target without a LUN
STORE_MISSING = "store-missing"  # a backing store (of a target, or named in a saved file) that does not exist
NO_VOLUME = "no-volume"          # a target or saved file of ours without its volume
UNREADABLE = "unreadable"        # a saved file not in the form one-iscsi writes
STALE_TID = "stale-tid"          # a saved file whose recorded TID tgtd has for another target, or not for its own
NO_TID = "no-tid"                # a saved file of an earlier version: it records no TID

OK, ORPHAN, INCOMPLETE, FOREIGN = "ok", "orphan", "incomplete", "foreign"
WHY_ORPHAN = {"volume": "no target, no saved file", "saved file": "no target, no volume, no backing store",
              "target": "no volume, no backing store"}

REMOVED, WOULD_REMOVE, SKIPPED, FAILED = "removed", "would remove", "skipped", "failed"


@dataclass(frozen=True)
class Entry:
    """A volume, target and saved file that belong together, or the ones of them there are."""
    name: str                      # the volume's name (lv-one-7), or the IQN of what is not ours
    iqn: str
    ours: bool                     # of this configuration's BASE_IQN, HOST, VG_NAME and image names
    volume: Optional[str] = None   # its device or file, when the volume exists
    size_mib: Optional[int] = None  # the volume's, in MiB rounded up
    target: Optional[tgt.Target] = None
    saved_file: Optional[str] = None
    backing_stores: Optional[tuple[str, ...]] = ()  # the target's LUNs, else its saved file's (None: unreadable)
    missing: tuple[str, ...] = ()      # those of backing_stores that do not exist
    exported_by: tuple[str, ...] = ()  # the targets with a LUN on the volume
    readable: bool = True              # the saved file, if any, is in the form one-iscsi writes
    recorded_tid: Optional[int] = None  # the TID the saved file records (0: none, a file of an earlier version)
    tid_holder: Optional[str] = None   # the IQN of the target tgtd has at recorded_tid

    @property
    def flags(self) -> tuple[str, ...]:
        checks = [
            (NO_TARGET, self.volume is not None and self.target is None),
            (NOT_SAVED, self.ours and self.target is not None and self.saved_file is None),
            (NOT_IN_TGTD, self.saved_file is not None and self.target is None),
            (NO_LUN, self.target is not None and not self.target.luns),
            (STORE_MISSING, bool(self.missing)),
            (NO_VOLUME, self.ours and self.volume is None),
            (UNREADABLE, self.backing_stores is None or not self.readable),
            (STALE_TID, self.stale_tid),
            (NO_TID, self.recorded_tid == 0),
        ]
        return tuple(flag for flag, applies in checks if applies)

    @property
    def stale_tid(self) -> bool:
        """The saved file records a TID that tgtd does not have for this
        target: another target has it, or this one has another. (Its target
        missing and its TID free is only not-in-tgtd: restore makes it there.)"""
        if not self.recorded_tid or self.tid_holder == self.iqn:
            return False
        return self.target is not None or self.tid_holder is not None

    @property
    def orphan(self) -> Optional[str]:
        """What gc removes: "volume", "saved file", "target" (with its saved
        file), or None. Never a volume with a saved file (a target to
        restore), a target or saved file whose backing store exists, or a
        target without saved file (one-iscsi did not make it)."""
        if not self.ours:
            return None
        no_data = self.backing_stores is not None and set(self.backing_stores) <= set(self.missing)
        if self.target is not None:
            return "target" if self.saved_file and self.volume is None and no_data else None
        if self.volume is not None:
            return "volume" if self.saved_file is None and not self.exported_by else None
        return "saved file" if no_data else None

    @property
    def state(self) -> str:
        if not self.ours:
            return FOREIGN
        if self.orphan:
            return ORPHAN
        return INCOMPLETE if self.flags else OK

    def as_dict(self) -> dict:
        target = self.target
        return {
            "name": self.name, "iqn": self.iqn, "ours": self.ours, "state": self.state, "flags": list(self.flags),
            "volume": self.volume, "size_mib": self.size_mib, "tid": target.tid if target else None,
            "backing_stores": list(self.backing_stores or ()), "missing_backing_stores": list(self.missing),
            "exported_by": list(self.exported_by), "saved_file": self.saved_file,
            "recorded_tid": self.recorded_tid or None,
            "sessions": [{"initiator": nexus.initiator, "addresses": list(nexus.addresses)}
                         for nexus in (target.sessions if target else ())],
        }


@dataclass(frozen=True)
class Facts:
    """What status reads on the target server."""
    targets: tuple[tgt.Target, ...]
    saved: Mapping[str, str]         # IQN -> its saved file
    volumes: Mapping[str, int]       # volume name -> size in bytes
    # IQN of a saved file without target -> the backing stores it names (None: unreadable)
    saved_stores: Mapping[str, Optional[tuple[str, ...]]]
    existing: frozenset              # the backing stores that exist
    specs: Mapping[str, Optional[tgtconf.TargetSpec]] = dataclasses.field(default_factory=dict)  # None: unreadable


def status(cfg: Config, server: Runner) -> list[Entry]:
    with server.session() as session:
        return collect(cfg, session)


def collect(cfg: Config, session: Session) -> list[Entry]:
    return entries(cfg, read_facts(cfg, session))


def read_facts(cfg: Config, session: Session) -> Facts:
    if cfg.target == "lio":
        return _lio_facts(cfg, session)
    server = TargetServer(session)
    targets = tuple(server.list())
    saved, specs = {}, {}
    for iqn, file, text in server.read_saved():
        if text is not None:  # else removed meanwhile
            saved[iqn], specs[iqn] = file, _spec_in(text, file)
    exported = {target.iqn for target in targets}
    saved_stores = {iqn: spec.backing_stores if spec else None for iqn, spec in specs.items() if iqn not in exported}
    stores = {lun.backing_store for target in targets for lun in target.luns}
    stores.update(store for named in saved_stores.values() for store in named or ())
    return Facts(targets, saved, _volumes(cfg, session), saved_stores, _existing(session, stores), specs)


def _lio_facts(cfg: Config, session: Session) -> Facts:
    """LIO's targets and saved configuration, in one run of the program.
    Its saved entries record no TIDs (LIO has none): no TID is compared."""
    found = ask(session, lio.inventory())
    targets = tuple(lio.target(data) for data in found["targets"])
    exported = {target.iqn for target in targets}
    saved_stores = {iqn: tuple(store for store in stores if store)  # "": a LUN of no saved storage object
                    for iqn, stores in found["saved"].items() if iqn not in exported}
    stores = {lun.backing_store for target in targets for lun in target.luns}
    stores.update(store for named in saved_stores.values() for store in named)
    return Facts(targets, {iqn: lio.SAVE_FILE for iqn in found["saved"]}, _volumes(cfg, session), saved_stores,
                 _existing(session, stores))


def _spec_in(text: str, file: str) -> Optional[tgtconf.TargetSpec]:
    try:
        return tgtconf.parse(text, file)
    except InvalidInput:  # not in one-iscsi's form
        return None


def _volumes(cfg: Config, session: Session) -> dict[str, int]:
    try:
        found = storage.parse_volumes(cfg.backend, session.run(storage.list_volumes(cfg)))
    except NotFound:  # no pool directory: nothing made there yet
        return {}
    return {name: size for name, size in found.items() if storage.is_image_volume(name)}


def _existing(session: Session, paths: set[str]) -> frozenset:
    if not paths:
        return frozenset()
    return frozenset(session.run(storage.existing(sorted(paths))).splitlines())


def entries(cfg: Config, facts: Facts) -> list[Entry]:
    """The join of facts: ours by volume name, the rest by IQN."""
    exporters: dict[str, list[str]] = {}
    for target in facts.targets:
        for lun in target.luns:
            exporters.setdefault(lun.backing_store, []).append(target.iqn)
    volume_iqns = [names.build(cfg.base_iqn, cfg.host, cfg.vg_name, name).iqn for name in facts.volumes]
    iqns = dict.fromkeys([*(target.iqn for target in facts.targets), *facts.saved, *volume_iqns])
    targets = {target.iqn: target for target in facts.targets}
    holders = {target.tid: target.iqn for target in facts.targets}
    found = [_entry(cfg, iqn, targets.get(iqn), facts, exporters, holders) for iqn in iqns]
    return sorted(found, key=lambda entry: (not entry.ours, _numbers(entry.name) if entry.ours else [], entry.name))


def _entry(cfg: Config, iqn: str, target: Optional[tgt.Target], facts: Facts,
           exporters: Mapping[str, list[str]], holders: Mapping[int, str]) -> Entry:
    lv = our_volume(cfg, iqn)
    spec = facts.specs.get(iqn)
    recorded = spec.tid if spec is not None else None
    stores = (tuple(lun.backing_store for lun in target.luns) if target is not None
              else facts.saved_stores.get(iqn, ()))
    volume = size_mib = None
    if lv is not None and lv in facts.volumes:
        volume = storage.volume_named(cfg.vg_name, lv, cfg).device
        size_mib = whole_mib(facts.volumes[lv])
    return Entry(name=lv or iqn, iqn=iqn, ours=lv is not None, volume=volume, size_mib=size_mib, target=target,
                 saved_file=facts.saved.get(iqn), backing_stores=stores,
                 missing=tuple(store for store in stores or () if store not in facts.existing),
                 exported_by=tuple(exporters.get(volume, ())) if volume else (),
                 readable=iqn not in facts.specs or facts.specs[iqn] is not None,
                 recorded_tid=recorded, tid_holder=holders.get(recorded) if recorded else None)


def our_volume(cfg: Config, iqn: str) -> Optional[str]:
    """The volume an IQN names when it is of this configuration's naming
    (BASE_IQN, HOST, VG_NAME, an image's or private copy's name), else None."""
    try:
        name = names.parse(iqn)
    except InvalidInput:
        return None
    if (name.base, name.host, name.vg) != (cfg.base_iqn, cfg.host, cfg.vg_name):
        return None
    return name.lv if storage.is_image_volume(name.lv) else None


def _numbers(name: str) -> list[int]:
    """lv-one-10 after lv-one-9."""
    return [int(number) for number in re.findall(r"[0-9]+", name)]


@dataclass(frozen=True)
class Outcome:
    """What gc did, or would do, with an orphan."""
    entry: Entry
    action: str    # REMOVED, WOULD_REMOVE, SKIPPED, FAILED
    why: str = ""  # of a skip or a failure

    @property
    def what(self) -> str:
        entry = self.entry
        if entry.orphan == "volume":
            return f"volume {entry.volume}"
        if entry.saved_file == lio.SAVE_FILE:  # one entry of LIO's one file
            return f"saved entry of {entry.iqn} in {entry.saved_file}" if entry.orphan == "saved file" \
                else f"target {entry.iqn} and its saved entry"
        if entry.orphan == "saved file":
            return f"saved file {entry.saved_file}"
        return f"target {entry.iqn} (TID {entry.target.tid}) and its saved file"

    def as_dict(self) -> dict:
        return {"name": self.entry.name, "iqn": self.entry.iqn, "orphan": self.entry.orphan, "what": self.what,
                "reason": WHY_ORPHAN[self.entry.orphan], "action": self.action, "why": self.why}


def gc_config(cfg: Config) -> Config:
    """The configuration gc runs with: an image's lock is waited for at most LOCK_WAIT seconds."""
    return dataclasses.replace(cfg, lock_timeout=min(cfg.lock_timeout, LOCK_WAIT))


def gc(cfg: Config, server: Runner, remove: bool) -> list[Outcome]:
    """Every orphan of the target server, removed when remove is true.
    A target with sessions and an image whose lock another one-iscsi holds
    are skipped; a removal that fails does not stop the others. The
    inventory is read in one session; each removal has a session of its own
    holding the image's lock (server's LOCK_TIMEOUT: see gc_config), in
    which the orphan is looked at again first."""
    with server.session() as session:
        return [_clean(cfg, server, session, entry, remove) for entry in collect(cfg, session) if entry.orphan]


def _clean(cfg: Config, server: Runner, session: Session, entry: Entry, remove: bool) -> Outcome:
    if entry.target is not None and entry.target.sessions:
        return Outcome(entry, SKIPPED, f"in use by {', '.join(entry.target.initiators)}")
    lock = image_lock(cfg, storage.volume_named(cfg.vg_name, entry.name, cfg))
    try:
        if not _lock_is_free(session, lock):
            return Outcome(entry, SKIPPED, f"another one-iscsi works on it (holds {lock})")
        if not remove:
            return Outcome(entry, WOULD_REMOVE)
        with server.session(hold=[lock]) as locked:
            now = next((again for again in collect(cfg, locked) if again.iqn == entry.iqn), None)
            if now is None or now.orphan != entry.orphan:
                return Outcome(entry, SKIPPED, "changed meanwhile: left as it is")
            if now.target is not None and now.target.sessions:
                return Outcome(entry, SKIPPED, f"in use by {', '.join(now.target.initiators)}")
            _remove(cfg, locked, now)
    except OneIscsiError as err:
        return Outcome(entry, FAILED, " ".join(str(err).split()))
    return Outcome(entry, WOULD_REMOVE if server.dry_run else REMOVED)


def _remove(cfg: Config, session: Session, entry: Entry) -> None:
    if cfg.target == "lio":
        _remove_lio(cfg, session, entry)
    elif entry.orphan == "target":
        TargetServer(session).delete_and_forget(entry.iqn)  # not forced: tgtd refuses a target with sessions
    elif entry.orphan == "saved file":
        TargetServer(session).forget(entry.iqn)
    else:
        for cmd in storage.volume_named(cfg.vg_name, entry.name, cfg).remove():
            session.run(cmd)


def _remove_lio(cfg: Config, session: Session, entry: Entry) -> None:
    """An orphan on LIO: a target with its saved entry (not forced: refused
    with sessions), a saved entry, or a volume with a storage object a
    killed cp may have left on it."""
    volume = storage.volume_named(cfg.vg_name, entry.name, cfg)
    if entry.orphan != "volume":
        ask(session, lio.delete(entry.iqn))
        return
    ask(session, lio.delete(entry.iqn, [volume.device], lio.storage_kind(volume.backend)))
    for cmd in volume.remove():
        session.run(cmd)


class _LockHeld(OneIscsiError):
    """Someone holds the lock file (lock_free)."""


def lock_free(path: str) -> Command:
    """Succeeds when nobody holds the lock file at path, at once; fails
    with _LockHeld when someone does. Takes it for no longer than `true` runs."""
    return command("flock", "--nonblock", "--conflict-exit-code", str(LOCK_BUSY_RC), path, "true", query=True,
                   explain=lambda err: _LockHeld(f"{path} on {err.host} is held") if err.rc == LOCK_BUSY_RC
                   else None)


def _lock_is_free(session: Session, path: str) -> bool:
    try:
        session.run(lock_free(path))
    except _LockHeld:
        return False
    return True
