"""tgtd: builders of `tgtadm` commands and the parser of its `show` output.

Pure: no I/O. Each builder also says how tgtadm's complaints are read
(tgtadm exits 22 for nearly everything: its stderr tells the cases apart).
"""
from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

from .command import Command, command
from .errors import AlreadyExists, CommandError, NotFound, OneIscsiError
from .units import MIB
from .values import MAX_TID

NOT_RUNNING = "Transport endpoint is not connected"
STILL_ACTIVE = "this target is still active"
NO_SUCH_TARGET = "can't find the target"
ACCOUNT_EXISTS = "this account already exists"
NO_SUCH_ACCOUNT = "can't find the account"
INVALID_REQUEST = "invalid request"
LUN_EXISTS = "this logical unit number already exists"
NO_SUCH_LUN = "can't find the logical unit"
RULE_EXISTS = "this access control rule already exists"
NO_SUCH_RULE = "this access control rule does not exist"

Explain = Callable[[CommandError], Optional[Exception]]


def _explainer(tid: Optional[int] = None, own: Optional[Explain] = None) -> Explain:
    def explain(err: CommandError) -> Optional[Exception]:
        better = own(err) if own else None
        if better is not None:
            return better
        if NOT_RUNNING in err.stderr:
            return err.with_hint(f"tgtd is not running on {err.host}: start it (systemctl start tgt), then "
                                 f"`one-iscsi -H {err.host} target restore`")
        if tid is not None and NO_SUCH_TARGET in err.stderr:
            return NotFound(f"no target with TID {tid} on {err.host}")
        if tid is not None and STILL_ACTIVE in err.stderr:
            return OneIscsiError(f"target TID {tid} on {err.host} still has sessions: "
                                 "log the initiators out first, or use --force")
        return None
    return explain


def _tgtadm(*args: str, tid: Optional[int] = None, own: Optional[Explain] = None, query: bool = False,
            secrets: tuple[str, ...] = ()) -> Command:
    return command("tgtadm", "--lld", "iscsi", *args, privileged=True, query=query, secrets=secrets,
                   explain=_explainer(tid, own))


def _when(text: str, error: Callable[[CommandError], Exception]) -> Explain:
    return lambda err: error(err) if text in err.stderr else None


def bind_address(tid: int, address: str) -> Command:
    """Fails with AlreadyExists when the target's ACL has the address."""
    return _acl("bind", tid, "--initiator-address", address)


def bind_initiator_name(tid: int, name: str) -> Command:
    """Fails with AlreadyExists when the target's ACL has the name."""
    return _acl("bind", tid, "--initiator-name", name)


def unbind_address(tid: int, address: str) -> Command:
    """Fails with NotFound when the target's ACL lacks the address."""
    return _acl("unbind", tid, "--initiator-address", address)


def unbind_initiator_name(tid: int, name: str) -> Command:
    """Fails with NotFound when the target's ACL lacks the name."""
    return _acl("unbind", tid, "--initiator-name", name)


def _acl(op: str, tid: int, option: str, value: str) -> Command:
    def own(err: CommandError) -> Optional[Exception]:
        if RULE_EXISTS in err.stderr:
            return AlreadyExists(f"{value} is already in the ACL of TID {tid} on {err.host}")
        if NO_SUCH_RULE in err.stderr:
            return NotFound(f"{value} is not in the ACL of TID {tid} on {err.host}")
        return None
    return _tgtadm("--op", op, "--mode", "target", "--tid", str(tid), option, value, tid=tid, own=own)


def new_account(user: str, password: str) -> Command:
    """Fails with AlreadyExists when tgtd has the account; the password is secret."""
    return _tgtadm("--op", "new", "--mode", "account", "--user", user, "--password", password,
                   secrets=(password,),
                   own=_when(ACCOUNT_EXISTS, lambda err: AlreadyExists(f"account {user} exists on {err.host}")))


def delete_account(user: str) -> Command:
    """Fails with NotFound when tgtd has no such account; tgtd unbinds it from every target."""
    return _tgtadm("--op", "delete", "--mode", "account", "--user", user,
                   own=_when(NO_SUCH_ACCOUNT, lambda err: NotFound(f"no account {user} on {err.host}")))


def bind_account(tid: int, user: str) -> Command:
    return _tgtadm("--op", "bind", "--mode", "account", "--tid", str(tid), "--user", user, tid=tid)


def unbind_account(tid: int, user: str) -> Command:
    """Fails with NotFound when the account is not bound to the target."""
    return _tgtadm("--op", "unbind", "--mode", "account", "--tid", str(tid), "--user", user, tid=tid,
                   own=_when(NO_SUCH_ACCOUNT, lambda err: NotFound(f"account {user} is not bound to TID {tid} "
                                                                   f"on {err.host}")))


def show_accounts() -> Command:
    return _tgtadm("--op", "show", "--mode", "account", query=True)


def parse_accounts(text: str) -> frozenset[str]:
    """The users of `tgtadm --op show --mode account`."""
    return frozenset(line.strip() for line in text.splitlines()[1:] if line.strip())


def new_lun(tid: int, device: str, lun: int = 1) -> Command:
    def own(err: CommandError) -> Optional[Exception]:
        if LUN_EXISTS in err.stderr:
            return AlreadyExists(f"TID {tid} on {err.host} already has LUN {lun}")
        if INVALID_REQUEST in err.stderr:
            return err.with_hint(f"cannot add {device} as LUN {lun} of TID {tid} (missing device or LUN in use?)")
        return None
    return _tgtadm("--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", str(lun),
                   "--backing-store", device, tid=tid, own=own)


def delete_lun(tid: int, lun: int = 1) -> Command:
    """Fails with NotFound when the target has no such LUN."""
    return _tgtadm("--op", "delete", "--mode", "logicalunit", "--tid", str(tid), "--lun", str(lun), tid=tid,
                   own=_when(NO_SUCH_LUN, lambda err: NotFound(f"TID {tid} on {err.host} has no LUN {lun}")))


# Adds LUN 1 of a target again with the same backing store, so that tgtd
# reads its size again (it does only when a LUN is added): delete and add back
# to back on the target server, keeping the moment without LUN 1 as short as
# tgtd allows. tgtd refuses to delete a LUN with commands in flight ("still
# active"): retried. Arguments: TID, device, tries, tgtadm as a command line
# made by shlex.join. Exit 3: LUN 1 was not deleted; any other failure: it was
# deleted and not added again.
READD_LUN = r'''
tid=$1 device=$2 tries=$3 tgtadm=$4
until out=$(eval "$tgtadm"' --lld iscsi --op delete --mode logicalunit --tid "$tid" --lun 1' 2>&1); do
  tries=$((tries - 1))
  case $out in
    *"still active"*) if [ "$tries" -gt 0 ] && sleep 0.01; then continue; fi ;;
  esac
  printf '%s\n' "$out" >&2; exit 3
done
eval "$tgtadm"' --lld iscsi --op new --mode logicalunit --tid "$tid" --lun 1 --backing-store "$device"'
'''
READD_TRIES = 300  # at 10 ms apart, about 4 s of a LUN busy without a pause


def readd_lun(tid: int, device: str, tgtadm: list[str]) -> Command:
    """READD_LUN, given tgtadm as it runs on the target server."""
    return command("sh", "-c", READD_LUN, "readd-lun", str(tid), device, str(READD_TRIES), shlex.join(tgtadm),
                   explain=lambda err: _explain_readd(err, tid, device))


def _explain_readd(err: CommandError, tid: int, device: str) -> Exception:
    if err.rc == 3 and "still active" in err.stderr:
        return OneIscsiError(f"LUN 1 of TID {tid} on {err.host} had commands in flight {READD_TRIES} times in a "
                             f"row: not added again, tgtd still reports its old size; try again")
    if err.rc == 3:
        return err.with_hint(f"could not remove LUN 1 of TID {tid} to add it again")
    return OneIscsiError(f"TID {tid} on {err.host} has no LUN 1 now: adding {device} again failed "
                         f"({err.stderr.strip() or 'no error output'}); add it with "
                         f"`one-iscsi -H {err.host} lun bind {tid} {device}`")


# Makes target IQN at the first TID from START that tgtd has free, in one go
# on the target server: tgtd makes a target only if neither its TID nor its
# name exists ("this target already exists"), so a TID is never taken twice;
# on that answer `show --tid` tells a taken TID (the next one is tried, TRIES
# in all, after MAX comes BASE) from a taken name. The target made is marked
# (MARK) and, with a HINT file, the next TID to try is written there.
# Arguments: START, BASE, MAX, TRIES, IQN, HINT file ('': none), tgtadm as
# a command line made by shlex.join. Prints `new TID` (made), `name TID`
# (TID is free: the name exists) or `taken TID` (the last TID tried was
# taken too); tgtadm's other failures go to stderr, with its exit status.
NEW_TARGET = r'''
tid=$1 base=$2 max=$3 tries=$4 iqn=$5 hint=$6 tgtadm=$7
while :; do
  if out=$(eval "$tgtadm"' --lld iscsi --op new --mode target --tid "$tid" --targetname "$iqn"' 2>&1); then
    eval "$tgtadm"' --lld iscsi --op update --mode target --tid "$tid" --name RedirectAddress --value "$iqn"' \
      >/dev/null 2>&1
    if [ -n "$hint" ]; then
      next=$base; [ "$tid" -ge "$max" ] || next=$((tid + 1))
      printf '%s\n' "$next" 2>/dev/null >"$hint" || :
    fi
    echo "new $tid"; exit 0
  else
    rc=$?
  fi
  case $out in *"already exists"*) ;; *) printf '%s\n' "$out" >&2; exit "$rc" ;; esac
  if out=$(eval "$tgtadm"' --lld iscsi --op show --mode target --tid "$tid"' 2>&1); then :; else
    rc=$?
    case $out in *"can't find the target"*) echo "name $tid"; exit 0 ;; esac
    printf '%s\n' "$out" >&2; exit "$rc"
  fi
  tries=$((tries - 1))
  if [ "$tries" -le 0 ]; then echo "taken $tid"; exit 0; fi
  if [ "$tid" -ge "$max" ]; then tid=$base; else tid=$((tid + 1)); fi
done
'''
NEW_TARGET_TRIES = 64  # TIDs one run of NEW_TARGET tries from its start


def new_target_from(start: int, base: int, iqn: str, tgtadm: list[str], tries: int = NEW_TARGET_TRIES,
                    hint: str = "") -> Command:
    """NEW_TARGET, given tgtadm as it runs on the target server."""
    return command("sh", "-c", NEW_TARGET, "new-target", str(start), str(base), str(MAX_TID), str(tries), iqn, hint,
                   shlex.join(tgtadm), explain=_as_tgtadm)


def _as_tgtadm(err: CommandError) -> Exception:
    """A failure of NEW_TARGET is tgtadm's, which it passes on."""
    failed = CommandError("tgtadm", err.host, err.rc, err.stderr)
    return _explainer()(failed) or failed


def parse_new(text: str) -> tuple[str, int]:
    """What NEW_TARGET printed: ("new" | "name" | "taken", TID)."""
    outcome, _, tid = text.strip().partition(" ")
    if outcome not in ("new", "name", "taken") or not tid.isdigit():
        raise OneIscsiError(f"unexpected answer of the target maker: {text.strip()[:200]!r}")
    return outcome, int(tid)


def read_hint(file: str) -> Command:
    """Prints the next TID to try (NEW_TARGET writes it); NotFound without the file."""
    return command("cat", "--", file, query=True,
                   explain=lambda err: NotFound(f"no {file} on {err.host}") if "No such file" in err.stderr
                   else None)


def parse_hint(text: str, base: int) -> Optional[int]:
    """The TID a hint file holds, if it is one from base on."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and base <= int(text) <= MAX_TID else None


# tgtd keeps for each target a redirect address, which it uses only together
# with a redirect reason (one-iscsi never sets one) and which `--op show
# --mode target --tid N` prints instead of the parameters. NEW_TARGET writes
# the target's own name there: the mark. A target marked with its IQN is the
# one one-iscsi made under that name in this tgtd's life (a target made anew,
# by tgt's start-up or by hand, has no mark), found by its TID without
# listing every target.
MARK = "RedirectAddress"


def show_target(tid: int) -> Command:
    """Prints the target's mark (parse_mark) or parameters; NotFound without such a TID."""
    return _tgtadm("--op", "show", "--mode", "target", "--tid", str(tid), tid=tid, query=True)


def parse_mark(text: str) -> str:
    """The name a target is marked with ('' if none), from show_target."""
    return next((line[len(MARK) + 1:] for line in text.splitlines() if line.startswith(f"{MARK}=")), "")


# Marks targets in one go: arguments tgtadm (a command line made by
# shlex.join), then TID IQN pairs. A mark only spares a listing: one that
# fails (the target gone meanwhile) is passed over.
MARK_TARGETS = r'''
tgtadm=$1; shift
while [ "$#" -ge 2 ]; do
  eval "$tgtadm"' --lld iscsi --op update --mode target --tid "$1" --name RedirectAddress --value "$2"' \
    >/dev/null 2>&1 || :
  shift 2
done
'''


def mark_targets(marks: Sequence[tuple[int, str]], tgtadm: list[str]) -> Command:
    """MARK_TARGETS, given tgtadm as it runs on the target server."""
    return command("sh", "-c", MARK_TARGETS, "mark-targets", shlex.join(tgtadm),
                   *(word for tid, iqn in marks for word in (str(tid), iqn)))


def show_connections(tid: int) -> Command:
    """Prints the connections of one target (parse_connections); NotFound without such a TID."""
    return _tgtadm("--op", "show", "--mode", "conn", "--tid", str(tid), tid=tid, query=True)


def parse_connections(text: str) -> tuple["Nexus", ...]:
    """The sessions of `tgtadm --op show --mode conn --tid N` (Session:,
    Connection:, Initiator:, IP Address: lines), one Nexus each."""
    sessions: dict[str, dict] = {}
    current: Optional[dict] = None
    for line in text.splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "Session":
            current = sessions.setdefault(value, {"initiator": "", "addresses": []})
        elif current is not None and key == "Initiator":
            current["initiator"] = value
        elif current is not None and key == "IP Address":
            current["addresses"].append(value)
    return tuple(Nexus(found["initiator"], tuple(found["addresses"])) for found in sessions.values())


def delete_target(tid: int, force: bool = False) -> Command:
    return _tgtadm("--op", "delete", *(["--force"] if force else []), "--mode", "target",
                   "--tid", str(tid), tid=tid)


def show_targets() -> Command:
    return _tgtadm("--op", "show", "--mode", "target", query=True)


def show_system() -> Command:
    """Succeeds when tgtd answers; prints its state."""
    return _tgtadm("--op", "show", "--mode", "sys", query=True)


def show_portals() -> Command:
    return _tgtadm("--op", "show", "--mode", "portal", query=True)


_PORTAL = re.compile(r"Portal: (.+):(\d+),\d+$")


def parse_portals(text: str) -> list[tuple[str, int]]:
    """(address, port) of each portal in `tgtadm --op show --mode portal`
    (`Portal: 127.0.0.1:3260,1`, `Portal: [::]:3260,1`)."""
    return [(found.group(1), int(found.group(2)))
            for found in map(_PORTAL.match, map(str.strip, text.splitlines())) if found]


@dataclass(frozen=True)
class Lun:
    lun: int
    backing_store: str
    size_mib: int
    type: str


@dataclass(frozen=True)
class Nexus:
    """An initiator logged in to a target (tgtd's "I_T nexus": an iSCSI session)."""
    initiator: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    tid: Optional[int]  # None: a LIO target (LIO has no TIDs)
    iqn: str
    luns: tuple[Lun, ...] = ()
    acl: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    sessions: tuple[Nexus, ...] = field(default_factory=tuple)

    @property
    def initiators(self) -> list[str]:
        """The initiator names logged in, each once."""
        return sorted({nexus.initiator for nexus in self.sessions})

    def as_dict(self) -> dict:
        data = {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}
        data["sessions"] = len(self.sessions)
        data["initiators"] = self.initiators
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
        sessions=tuple(Nexus(s.get("initiator", ""), tuple(s["addresses"])) for s in sessions),
    )


def _lun(entry: dict):
    path = entry.get("Backing store path", "None")
    if entry["lun"] == 0 or path == "None":
        return None
    size = _SIZE.match(entry.get("Size", ""))
    return Lun(lun=entry["lun"], backing_store=path, size_mib=mib_of_shown_mb(int(size.group(1))) if size else 0,
               type=entry.get("Type", ""))


def shown_mb(size: int) -> int:
    """The `Size: N MB` tgtd shows for a LUN of size bytes: decimal MB, nearly
    rounded, worked out in 512-byte sectors (tgt 1.0.x, print_disksize)."""
    sectors = size // 512
    return (sectors - (sectors // 625 - 974)) // 1950


def mib_of_shown_mb(mb: int) -> int:
    """The size in whole MiB of a LUN tgtd shows as mb MB: exact for a
    whole number of MiB (every size one-iscsi makes: each MiB adds more than
    one to what tgtd shows), otherwise within one MiB."""
    mib = max(0, mb * 1000 * 1000 // MIB - 1)
    while shown_mb(mib * MIB) < mb:
        mib += 1
    return mib


def find(targets: list[Target], iqn: str) -> Optional[Target]:
    """The target named exactly iqn, or None."""
    return next((target for target in targets if target.iqn == iqn), None)


def find_tid(targets: list[Target], tid: int) -> Optional[Target]:
    """The target with that TID, or None."""
    return next((target for target in targets if target.tid == tid), None)


def users_of(target: Target) -> tuple[str, ...]:
    """The incoming CHAP users bound to target (not its outgoing one)."""
    return tuple(account for account in target.accounts if not account.endswith(" (outgoing)"))


def next_free_tid(targets: list[Target], base_tid: int) -> int:
    """One more than the highest TID in use (at least base_tid); the lowest
    free one when that is MAX_TID."""
    used = {target.tid for target in targets}
    highest = max(used, default=0)
    if highest < MAX_TID:
        return max(highest + 1, base_tid)
    tid = base_tid
    while tid in used:
        tid += 1
    return tid
