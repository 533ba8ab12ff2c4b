"""What tgt's start-up makes of tgt's whole configuration.

At tgt's start, `tgt-admin -e` reads targets.conf and what it includes, and
makes the targets in the order of their names: each at its `controller_tid`
when it has one, else at one more than the TID it gave the target before it
(1 for the first). Nothing keeps the two kinds apart: a target without
controller_tid can get a TID another target records. That one's `--op new`
then fails and, past it (one-iscsi's include file says `ignore-errors yes`),
tgt-admin binds its LUNs, ACL and CHAP account to the target that has its
TID. Every file one-iscsi saves records a TID, so tgt's start is safe when
every target of the configuration records one, each its own, and the others'
are below BASE_TID (where one-iscsi starts to allocate). Pure: doctor reads
the files.
"""
from __future__ import annotations

import fnmatch
import posixpath
import re
from dataclasses import dataclass
from typing import Optional

from .command import Command, command

# Config::General's include, Apache's way (tgt-admin's): quoted, or after a space
INCLUDE = re.compile(r"^include(optional)?(?:\s*\"(.*)\"|\s*'(.*)'|\s+(.+))$", re.IGNORECASE)
OPTION = re.compile(r"^(\S+?)(?:\s*=\s*|\s+)(.*)$")
COMMENT = re.compile(r"(?<!\\)#.*")
BLOCK_OPEN = re.compile(r"^<\s*([^/\s>][^\s>]*)(?:\s+(.*?))?\s*>$")
BLOCK_CLOSE = re.compile(r"^<\s*/")
GLOB = re.compile(r"[*?\[{]")
SHOWN = 3  # names a problem shows before "and N more"


@dataclass(frozen=True)
class Declared:
    """A <target> block of tgt's configuration."""
    name: str
    tid: Optional[int]  # its controller_tid; None: none, or not a TID
    file: str
    bad: str = ""       # a controller_tid that is not a TID, as written


def declared(text: str, file: str) -> list[Declared]:
    """The targets a config file declares, with their controller_tid."""
    found, depth, name, tid, bad = [], 0, "", None, ""
    for line in _lines(text):
        opened = BLOCK_OPEN.match(line)
        if opened:
            depth += 1
            if depth == 1 and opened[1] == "target":  # tgt-admin takes no <TARGET>
                name, tid, bad = (opened[2] or "").strip("\"'"), None, ""
        elif BLOCK_CLOSE.match(line):
            if depth == 1 and name:
                found.append(Declared(name, tid, file, bad))
                name = ""
            depth = max(depth - 1, 0)
        elif depth == 1 and name:
            option = OPTION.match(line)
            if option and option[1] == "controller_tid":
                value = option[2]
                tid = int(value) if value.isascii() and value.isdigit() and int(value) > 0 else None
                bad = "" if tid else value
    return found


def includes(text: str) -> list[tuple[str, bool]]:
    """The paths, globs and directories a config file includes, each with
    whether it is optional (IncludeOptional: tgt-admin passes over a
    missing file, not over a missing `include`)."""
    return [(match[2] or match[3] or match[4], bool(match[1])) for match in map(INCLUDE.match, _lines(text)) if match]


def _lines(text: str) -> list[str]:
    """The lines, comments cut off (Config::General's, where a # is not escaped)."""
    return [cut for cut in (COMMENT.sub("", line).strip() for line in text.splitlines()) if cut]


def followed(pattern: str) -> bool:
    """Whether included() reads an include as tgt-admin does: a file, a
    directory, or a glob (without braces) in its last part only."""
    return "{" not in pattern and not GLOB.search(posixpath.dirname(pattern))


def is_glob(pattern: str) -> bool:
    return bool(GLOB.search(posixpath.basename(pattern)))


def find_included(pattern: str) -> Command:
    """Prints the path of each file under what an include names (a file, a
    directory, or a glob in its last part), links followed as Perl's -f
    does, NUL-ended; see included()."""
    where = posixpath.dirname(pattern) if is_glob(pattern) else pattern
    return command("find", "-L", where, "-maxdepth", "1", "-type", "f", "-printf", "%p\\0", query=True)


def included(text: str, pattern: str) -> list[str]:
    """The files an include reads, in tgt-admin's order, from what
    find_included printed: the file, a directory's files (dot files too), or
    a glob's matches (dot files only when the glob's name starts with one)."""
    base = posixpath.basename(pattern)
    files = []
    for path in filter(None, text.split("\0")):
        name = posixpath.basename(path)
        if not is_glob(pattern) or (fnmatch.fnmatchcase(name, base) and (not name.startswith(".")
                                                                         or base.startswith("."))):
            files.append(path)
    return sorted(files)


def start_tids(targets: list[Declared]) -> dict[str, int]:
    """The TID tgt-admin gives each target at tgt's start (in an empty tgtd);
    a name two blocks declare is one target, as tgt-admin merges them."""
    tids, last = {}, 0
    for target in _by_name(targets):
        last = target.tid if target.tid is not None else last + 1
        tids[target.name] = last
    return tids


def problems(targets: list[Declared], own_dir: str, base_tid: int) -> list[str]:
    """What could make tgt's start bind one target's LUNs, ACL or CHAP to
    another; each a sentence saying what to do."""
    targets = _by_name(targets)
    found = [f"{t.name} ({t.file}) has controller_tid {t.bad!r}, which is no TID: tgt-admin hands it to sh as it "
             "is; give it a number" for t in targets if t.bad]
    recorded: dict[int, list[Declared]] = {}
    for target in targets:
        if target.tid is not None:
            recorded.setdefault(target.tid, []).append(target)
    for tid, holders in sorted(recorded.items()):
        if len(holders) > 1:
            found.append(f"TID {tid} is recorded by {_names(holders)}: tgt's start makes only the first and binds "
                         "the others' LUNs, ACL and CHAP to it; `one-iscsi target restore` records the TIDs "
                         "one-iscsi's targets have, give the others TIDs of their own")
    high = [t for t in targets if t.tid is not None and t.tid >= base_tid and not _own(t, own_dir)]
    if high:
        found.append(f"{_names(high)} {_record(high)} TIDs from BASE_TID {base_tid} on, which one-iscsi gives its "
                     f"own targets (tgtd refuses only a TID it has): {_below(base_tid, 'move them')}")
    if recorded:
        without = [t for t in targets if t.tid is None and not t.bad]
        given = start_tids(targets)
        for target in without:
            holder = recorded.get(given[target.name], [None])[0]
            if holder is not None:
                found.append(f"at tgt's start {target.name} ({target.file}) takes TID {given[target.name]}, which "
                             f"{holder.name} ({holder.file}) records: of the two, the one made second gets its "
                             "LUNs, ACL and CHAP bound to the other")
        own = [t for t in without if _own(t, own_dir)]
        if own:
            found.append(f"{_names(own)} in {own_dir} {_record(own)} no TID (an earlier version's files): tgt's "
                         "start numbers such targets after the one before them and may give one a TID another "
                         "records; `one-iscsi target restore` records their TIDs")
        others = [t for t in without if not _own(t, own_dir)]
        if others:
            found.append(f"{_names(others)} {_record(others)} no TID: tgt's start numbers such targets after the "
                         "one before them and may give one a TID another records; "
                         f"{_below(base_tid, 'give each a controller_tid of its own')}")
    return found


def _record(targets: list[Declared]) -> str:
    return "records" if len(targets) == 1 else "record"


def _below(base_tid: int, what: str) -> str:
    if base_tid > 1:
        return f"{what} below {base_tid}"
    return f"{what} and set BASE_TID above their TIDs"


def _by_name(targets: list[Declared]) -> list[Declared]:
    merged: dict[str, Declared] = {}
    for target in targets:
        first = merged.setdefault(target.name, target)
        if first.tid is None and target.tid is not None:
            merged[target.name] = target
    return [merged[name] for name in sorted(merged)]


def _own(target: Declared, own_dir: str) -> bool:
    return posixpath.dirname(target.file) == own_dir.rstrip("/")


def _names(targets: list[Declared]) -> str:
    shown = ", ".join(f"{t.name} ({t.file})" for t in targets[:SHOWN])
    return shown + (f" and {len(targets) - SHOWN} more" if len(targets) > SHOWN else "")
