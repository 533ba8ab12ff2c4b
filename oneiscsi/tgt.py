"""tgtd: builders of `tgtadm` command lines and the parser of its `show` output.

Pure: no I/O. `targets.py` runs these through a Runner.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

NOT_RUNNING = "Transport endpoint is not connected"
STILL_ACTIVE = "this target is still active"
NO_SUCH_TARGET = "can't find the target"
ALREADY_EXISTS = "this target already exists"
ACCOUNT_EXISTS = "this account already exists"


def _tgtadm(*args: str) -> list[str]:
    return ["tgtadm", "--lld", "iscsi", *args]


def new_target(tid: int, iqn: str) -> list[str]:
    return _tgtadm("--op", "new", "--mode", "target", "--tid", str(tid), "--targetname", iqn)


def bind_all(tid: int) -> list[str]:
    return bind_address(tid, "ALL")


def bind_address(tid: int, address: str) -> list[str]:
    return _tgtadm("--op", "bind", "--mode", "target", "--tid", str(tid), "--initiator-address", address)


def bind_initiator_name(tid: int, name: str) -> list[str]:
    return _tgtadm("--op", "bind", "--mode", "target", "--tid", str(tid), "--initiator-name", name)


def new_account(user: str, password: str) -> list[str]:
    """password should be a run.Secret, so that --dry-run masks it."""
    return _tgtadm("--op", "new", "--mode", "account", "--user", user, "--password", password)


def bind_account(tid: int, user: str) -> list[str]:
    return _tgtadm("--op", "bind", "--mode", "account", "--tid", str(tid), "--user", user)


def new_lun(tid: int, device: str, lun: int = 1) -> list[str]:
    return _tgtadm("--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", str(lun),
                   "--backing-store", device)


def delete_target(tid: int, force: bool = False) -> list[str]:
    return _tgtadm("--op", "delete", *(["--force"] if force else []), "--mode", "target",
                   "--tid", str(tid))


def show_targets() -> list[str]:
    return _tgtadm("--op", "show", "--mode", "target")


@dataclass(frozen=True)
class Lun:
    lun: int
    backing_store: str
    size_mb: int
    type: str


@dataclass(frozen=True)
class Session:
    initiator: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    tid: int
    iqn: str
    luns: tuple[Lun, ...] = ()
    acl: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    sessions: tuple[Session, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        data = {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}
        data["sessions"] = len(self.sessions)
        data["initiators"] = sorted({s.initiator for s in self.sessions})
        return data


_TARGET = re.compile(r"Target (\d+): (\S+)$")
_SIZE = re.compile(r"(\d+) MB")


def parse_show(text: str) -> list[Target]:
    """Parse `tgtadm --op show --mode target`.

    Sections are told apart by their headers; the controller LUN 0 (no
    backing store) is left out.
    """
    targets: list[Target] = []
    for block in _split_targets(text):
        targets.append(_parse_target(block))
    return targets


def _split_targets(text: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if _TARGET.match(line):
            blocks.append([line])
        elif blocks and line.strip():
            blocks[-1].append(line)
    return blocks


def _parse_target(block: list[str]) -> Target:
    tid, iqn = _TARGET.match(block[0]).groups()
    section = None
    luns, acl, accounts, sessions = [], [], [], []
    lun: dict = {}
    session: dict = {}
    for line in block[1:]:
        text = line.strip()
        if line.startswith("    ") and not line.startswith("     "):
            section = text.rstrip(":")
            continue
        key, _, value = text.partition(": ")
        if section == "LUN information":
            if key == "LUN":
                lun = {"lun": int(value)}
                luns.append(lun)
            else:
                lun[key.rstrip(":")] = value
        elif section == "I_T nexus information":
            if key == "I_T nexus":
                session = {"addresses": []}
                sessions.append(session)
            elif key == "Initiator":
                session["initiator"] = value.split(" alias:")[0]
            elif key == "IP Address":
                session["addresses"].append(value)
        elif section == "ACL information":
            acl.append(text)
        elif section == "Account information":
            accounts.append(text)
    return Target(
        tid=int(tid), iqn=iqn,
        luns=tuple(lun for lun in map(_lun, luns) if lun is not None),
        acl=tuple(acl), accounts=tuple(accounts),
        sessions=tuple(Session(s.get("initiator", ""), tuple(s["addresses"])) for s in sessions),
    )


def _lun(entry: dict):
    path = entry.get("Backing store path", "None")
    if entry["lun"] == 0 or path == "None":
        return None
    size = _SIZE.match(entry.get("Size", ""))
    return Lun(lun=entry["lun"], backing_store=path, size_mb=int(size.group(1)) if size else 0,
               type=entry.get("Type", ""))


def find(targets: list[Target], iqn: str):
    """The target named exactly iqn, or None."""
    return next((target for target in targets if target.iqn == iqn), None)


def lowest_free_tid(targets: list[Target], base_tid: int) -> int:
    used = {target.tid for target in targets}
    tid = base_tid
    while tid in used:
        tid += 1
    return tid
