"""Persistence: one tgt config file per one-iscsi target on the target server.

The files are in the format of tgt's targets.conf, in a directory of their own
(CONF_DIR) that tgt's configuration includes, so tgt's own start-up brings
the targets back; `one-iscsi target restore` reads them back into a running
tgtd. A file records the TID its target was made with (`controller_tid`, which
tgt-admin honours: the target gets that TID at tgt's start instead of the
next one), so that one-iscsi finds its target by that TID without listing
every target. Written atomically (temporary file, fsync, rename), mode 0600, in a
0700 directory: they hold CHAP passwords. Pure: the file I/O is Commands.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

from . import values
from .command import Command, command
from .errors import InvalidInput, NotFound

HEADER = "# Written by one-iscsi; `one-iscsi target restore` reads it back. Do not edit.\n"
INITIATOR_NAME_PREFIXES = ("iqn.", "eui.", "naa.")
# an address no initiator has: keeps tgt-admin from adding ALL to a target
# open only to initiator names
NO_ADDRESS = "0.0.0.0/32"
# what render() writes inside <target>, with its number of values (and <backing-store PATH> blocks
# holding `lun N`)
DIRECTIVES = {"controller_tid": 1, "backing-store": 1, "initiator-address": 1, "initiator-name": 1,
              "incominguser": 2}


@dataclass(frozen=True)
class TargetSpec:
    """What a one-iscsi target is made of: enough to create it again."""
    iqn: str
    backing_stores: tuple[str, ...]         # in the order of lun_numbers
    initiators: tuple[str, ...] = ("ALL",)  # addresses, networks, initiator names or ALL; none: nobody
    chap_user: str = ""
    chap_password: str = field(default="", repr=False)
    lun_numbers: tuple[int, ...] = ()       # of the backing stores; empty: 1, 2, ... in order
    tid: int = 0                            # the TID it was made with; 0: not recorded (older files)

    def __post_init__(self):
        if not self.lun_numbers:  # frozen: set once, so that equal targets compare equal
            object.__setattr__(self, "lun_numbers", tuple(range(1, len(self.backing_stores) + 1)))

    @property
    def luns(self) -> tuple[tuple[int, str], ...]:
        """(LUN number, backing store) pairs."""
        return tuple(zip(self.lun_numbers, self.backing_stores))

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(i for i in self.initiators if not is_initiator_name(i))

    @property
    def initiator_names(self) -> tuple[str, ...]:
        return tuple(i for i in self.initiators if is_initiator_name(i))

    def with_luns(self, luns) -> "TargetSpec":
        """The same target with these (LUN number, backing store) pairs, in LUN order."""
        ordered = sorted(luns)
        return replace(self, backing_stores=tuple(store for _, store in ordered),
                       lun_numbers=tuple(number for number, _ in ordered))

    def with_initiators(self, initiators) -> "TargetSpec":
        return replace(self, initiators=tuple(dict.fromkeys(initiators)))

    def with_chap(self, user: str = "", password: str = "") -> "TargetSpec":
        return replace(self, chap_user=user, chap_password=password)

    def with_tid(self, tid: int) -> "TargetSpec":
        return replace(self, tid=tid)


def is_initiator_name(initiator: str) -> bool:
    """An initiator name (iqn., eui., naa.), not an address, a network or ALL."""
    return initiator.startswith(INITIATOR_NAME_PREFIXES)


def check(spec: TargetSpec, origin: str) -> TargetSpec:
    """spec if every field passes the rules of values.py, else InvalidInput
    naming origin and the field: tgt-admin runs these values through a shell."""
    fields = [("IQN", values.iqn, spec.iqn)]
    fields += [("backing store", values.path, store) for store in spec.backing_stores]
    fields += [("initiator", values.initiator, initiator) for initiator in spec.initiators]
    fields += [("CHAP user", values.chap_user, spec.chap_user)]
    for name, rule, value in fields:
        try:
            rule(value)
        except ValueError as err:
            raise InvalidInput(f"{origin}: {name} {value!r} {err}") from None
    try:
        values.chap_password(spec.chap_password)
    except ValueError as err:
        raise InvalidInput(f"{origin}: CHAP password {err}") from None
    if len(spec.lun_numbers) != len(spec.backing_stores) or any(
            type(number) is not int or not 1 <= number <= values.MAX_LUN for number in spec.lun_numbers):
        raise InvalidInput(f"{origin}: LUN numbers must be integers from 1 to {values.MAX_LUN}, "
                           "one per backing store")
    for kind, items in (("LUN", spec.lun_numbers), ("backing store", spec.backing_stores)):
        twice = sorted({item for item in items if items.count(item) > 1})
        if twice:
            raise InvalidInput(f"{origin}: {kind} {twice[0]} given twice")
    if bool(spec.chap_user) != bool(spec.chap_password):
        raise InvalidInput(f"{origin}: CHAP user and password go together")
    if type(spec.tid) is not int or not 0 <= spec.tid <= values.MAX_TID:
        raise InvalidInput(f"{origin}: TID must be an integer from 1 to {values.MAX_TID} (0: not recorded)")
    return spec


def render(spec: TargetSpec) -> str:
    """The file of spec; InvalidInput if a value breaks the rules of values.py."""
    check(spec, f"target {spec.iqn!r}")
    # tgt-admin binds ALL to a target without initiator-address
    addresses = spec.addresses or (NO_ADDRESS,)
    lines = [HEADER.rstrip("\n"), f"<target {spec.iqn}>"]
    if spec.tid:
        lines.append(f"    controller_tid {spec.tid}")
    if spec.lun_numbers in ((), (1,)):
        lines += [f"    backing-store {store}" for store in spec.backing_stores]
    else:  # tgt-admin numbers plain backing-store lines in the order of their paths, skipping missing ones
        for number, store in spec.luns:
            lines += [f"    <backing-store {store}>", f"        lun {number}", "    </backing-store>"]
    lines += [f"    initiator-address {address}" for address in addresses]
    lines += [f"    initiator-name {name}" for name in spec.initiator_names]
    if spec.chap_user:
        lines.append(f"    incominguser {spec.chap_user} {spec.chap_password}")
    lines.append("</target>")
    return "\n".join(lines) + "\n"


def parse(text: str, origin: str = "target file") -> TargetSpec:
    """Read back a file written by render(); InvalidInput naming origin for
    anything render() does not write."""
    iqn, plain, blocks, initiators, chap, tid, state = "", [], [], [], ("", ""), 0, "before"
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"{origin}: line {number}"
        if state == "store":
            state = _block_line(words, blocks[-1], where)
        elif words[0].startswith("<target"):
            if state != "before":
                raise InvalidInput(f"{where}: a second <target> section")
            if len(words) != 2 or not words[1].endswith(">"):
                raise InvalidInput(f"{where}: expected <target IQN>")
            iqn, state = words[1][:-1], "inside"
        elif words == ["</target>"] and state == "inside":
            state = "after"
        elif state != "inside":
            raise InvalidInput(f"{where}: {words[0][:40]!r} outside <target>")
        elif words[0].startswith("<backing-store"):
            if len(words) != 2 or not words[1].endswith(">"):
                raise InvalidInput(f"{where}: expected <backing-store PATH>")
            blocks.append([words[1][:-1], None])
            state = "store"
        elif words[0] not in DIRECTIVES:
            raise InvalidInput(f"{where}: unknown directive {words[0][:40]!r}")
        elif len(words) != DIRECTIVES[words[0]] + 1:
            raise InvalidInput(f"{where}: {words[0]} takes {DIRECTIVES[words[0]]} value(s)")
        elif words[0] == "backing-store":
            plain.append(words[1])
        elif words[0] == "incominguser":
            if chap[0]:
                raise InvalidInput(f"{where}: a second incominguser")
            chap = (words[1], words[2])
        elif words[0] == "controller_tid":
            if tid:
                raise InvalidInput(f"{where}: a second controller_tid")
            tid = _tid(words[1], where)
        else:
            initiators.append(words[1])
    if state == "before":
        raise InvalidInput(f"{origin} has no <target IQN> section")
    if state != "after":
        raise InvalidInput(f"{origin}: <target {iqn}> has no </target>")
    if plain and blocks:
        raise InvalidInput(f"{origin}: both backing-store lines and <backing-store> blocks")
    luns = [(lun, store) for store, lun in blocks] or list(enumerate(plain, 1))
    spec = TargetSpec(iqn, (), tuple(initiators) or ("ALL",), *chap, tid=tid).with_luns(luns)
    if spec.addresses == (NO_ADDRESS,):  # what render() writes for initiator names alone, or nobody
        spec = replace(spec, initiators=spec.initiator_names)
    return check(spec, origin)


def _tid(text: str, where: str) -> int:
    try:
        return values.number(text, 1, values.MAX_TID)
    except ValueError as err:
        raise InvalidInput(f"{where}: controller_tid {err}, got {text[:40]!r}") from None


def _block_line(words: list[str], block: list, where: str) -> str:
    """A line of <backing-store PATH>: `lun N`, then </backing-store>. The state after it."""
    if words == ["</backing-store>"] and block[1] is not None:
        return "inside"
    if len(words) == 2 and words[0] == "lun" and block[1] is None and words[1].isascii() and words[1].isdigit():
        block[1] = int(words[1])
        return "store"
    raise InvalidInput(f"{where}: expected `lun N` and then </backing-store> in <backing-store {block[0][:40]}>")


def path(conf_dir: str, iqn: str) -> str:
    return posixpath.join(conf_dir, f"{iqn}.conf")


def include_path(conf_dir: str) -> str:
    """tgt's conf.d includes *.conf files: this one includes CONF_DIR."""
    return conf_dir.rstrip("/") + ".conf"


def include(conf_dir: str) -> str:
    """The include file's content. ignore-errors: tgt-admin goes on past a
    target tgtd refuses (a backing store it cannot open) instead of leaving
    every later target, one-iscsi's or not, down at tgt's start."""
    return f"ignore-errors yes\ninclude {conf_dir.rstrip('/')}/*.conf\n"


def write(file: str, content: str, mode: str = "0600") -> list[Command]:
    """Commands that write a file atomically. The directory is made 0700 so
    nobody else can read the file while it is being written."""
    return write_all([(file, content)], mode)


def write_all(files: Sequence[tuple[str, str]], mode: str = "0600") -> list[Command]:
    """write() of several (file, content) pairs: each directory made and
    synced once."""
    directories = list(dict.fromkeys(posixpath.dirname(file) for file, _content in files))
    commands = [command("mkdir", "-p", "-m", "0700", directory, privileged=True) for directory in directories]
    for file, content in files:
        temporary = posixpath.join(posixpath.dirname(file), f".{posixpath.basename(file)}.tmp")
        commands += [command("dd", f"of={temporary}", "conv=fsync", "status=none", input=content, privileged=True),
                     command("chmod", mode, temporary, privileged=True),
                     command("mv", "-f", temporary, file, privileged=True)]
    return commands + [command("sync", directory, privileged=True) for directory in directories]


def exists(file: str) -> Command:
    """Succeeds when file exists."""
    return command("test", "-e", file, query=True)


def remove(file: str) -> Command:
    return command("rm", "-f", file, privileged=True)


def list_files(conf_dir: str) -> Command:
    """Prints the size in bytes and the name of each target file, a line
    each (parse_files); NotFound without conf_dir."""
    return command("find", conf_dir, "-maxdepth", "1", "-name", "*.conf", "-printf", "%s %f\\n",
                   privileged=True, query=True, explain=_not_found(conf_dir))


def parse_files(text: str) -> list[tuple[str, int]]:
    """(name, size) of each file list_files prints, by name."""
    files = []
    for line in text.splitlines():
        size, _, name = line.partition(" ")
        if name and size.isdigit():
            files.append((name, int(size)))
    return sorted(files)


def read(*files: str) -> Command:
    """Prints the files, one after the other; NotFound when one is missing."""
    return command("cat", "--", *files, privileged=True, query=True, explain=_not_found(" ".join(files)))


def split(text: str, sizes: list[int]) -> Optional[list[str]]:
    """The texts of the files read() printed one after the other, cut by
    their sizes in bytes (as list_files gave them); None when the sizes do
    not add up (a file changed meanwhile, or was not valid UTF-8)."""
    data = text.encode()
    if len(data) != sum(sizes):
        return None
    texts, start = [], 0
    for size in sizes:
        texts.append(data[start:start + size].decode(errors="replace"))
        start += size
    return texts


def _not_found(what: str):
    return lambda err: NotFound(f"no {what} on {err.host}") if "No such file" in err.stderr else None
