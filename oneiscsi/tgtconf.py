"""Persistence: one tgt config file per one-iscsi target on the target server.

The files are in the format of tgt's targets.conf, in a directory of their own
(CONF_DIR) that tgt's configuration includes, so tgt's own start-up brings
the targets back; `one-iscsi target restore` reads them back into a running
tgtd. Written atomically (temporary file, fsync, rename), mode 0600, in a
0700 directory: they hold CHAP passwords. Pure: the file I/O is Commands.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, replace

from . import values
from .command import Command, command
from .errors import InvalidInput, NotFound

HEADER = "# Written by one-iscsi; `one-iscsi target restore` reads it back. Do not edit.\n"
INITIATOR_NAME_PREFIXES = ("iqn.", "eui.", "naa.")
# an address no initiator has: keeps tgt-admin from adding ALL to a target
# open only to initiator names
NO_ADDRESS = "0.0.0.0/32"
# what render() writes inside <target>, with its number of values
DIRECTIVES = {"backing-store": 1, "initiator-address": 1, "initiator-name": 1, "incominguser": 2}


@dataclass(frozen=True)
class TargetSpec:
    """What a one-iscsi target is made of: enough to create it again."""
    iqn: str
    backing_stores: tuple[str, ...]         # LUN 1, 2, ...
    initiators: tuple[str, ...] = ("ALL",)  # addresses, networks, initiator names or ALL
    chap_user: str = ""
    chap_password: str = field(default="", repr=False)

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(i for i in self.initiators if not i.startswith(INITIATOR_NAME_PREFIXES))

    @property
    def initiator_names(self) -> tuple[str, ...]:
        return tuple(i for i in self.initiators if i.startswith(INITIATOR_NAME_PREFIXES))


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
    if not spec.backing_stores:
        raise InvalidInput(f"{origin}: no backing store")
    if not spec.initiators:
        raise InvalidInput(f"{origin}: no initiators")
    if bool(spec.chap_user) != bool(spec.chap_password):
        raise InvalidInput(f"{origin}: CHAP user and password go together")
    return spec


def render(spec: TargetSpec) -> str:
    """The file of spec; InvalidInput if a value breaks the rules of values.py."""
    check(spec, f"target {spec.iqn!r}")
    # tgt-admin binds ALL to a target without initiator-address
    addresses = spec.addresses or ((NO_ADDRESS,) if spec.initiator_names else ())
    lines = [HEADER.rstrip("\n"), f"<target {spec.iqn}>"]
    lines += [f"    backing-store {store}" for store in spec.backing_stores]
    lines += [f"    initiator-address {address}" for address in addresses]
    lines += [f"    initiator-name {name}" for name in spec.initiator_names]
    if spec.chap_user:
        lines.append(f"    incominguser {spec.chap_user} {spec.chap_password}")
    lines.append("</target>")
    return "\n".join(lines) + "\n"


def parse(text: str, origin: str = "target file") -> TargetSpec:
    """Read back a file written by render(); InvalidInput naming origin for
    anything render() does not write."""
    iqn, stores, initiators, chap, state = "", [], [], ("", ""), "before"
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"{origin}: line {number}"
        if words[0].startswith("<target"):
            if state != "before":
                raise InvalidInput(f"{where}: a second <target> section")
            if len(words) != 2 or not words[1].endswith(">"):
                raise InvalidInput(f"{where}: expected <target IQN>")
            iqn, state = words[1][:-1], "inside"
        elif words == ["</target>"] and state == "inside":
            state = "after"
        elif state != "inside":
            raise InvalidInput(f"{where}: {words[0][:40]!r} outside <target>")
        elif words[0] not in DIRECTIVES:
            raise InvalidInput(f"{where}: unknown directive {words[0][:40]!r}")
        elif len(words) != DIRECTIVES[words[0]] + 1:
            raise InvalidInput(f"{where}: {words[0]} takes {DIRECTIVES[words[0]]} value(s)")
        elif words[0] == "backing-store":
            stores.append(words[1])
        elif words[0] == "incominguser":
            if chap[0]:
                raise InvalidInput(f"{where}: a second incominguser")
            chap = (words[1], words[2])
        else:
            initiators.append(words[1])
    if state == "before":
        raise InvalidInput(f"{origin} has no <target IQN> section")
    if state == "inside":
        raise InvalidInput(f"{origin}: <target {iqn}> has no </target>")
    spec = TargetSpec(iqn, tuple(stores), tuple(initiators) or ("ALL",), *chap)
    if spec.addresses == (NO_ADDRESS,) and spec.initiator_names:
        spec = replace(spec, initiators=spec.initiator_names)
    return check(spec, origin)


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
    directory = posixpath.dirname(file)
    temporary = posixpath.join(directory, f".{posixpath.basename(file)}.tmp")
    return [
        command("mkdir", "-p", "-m", "0700", directory, privileged=True),
        command("dd", f"of={temporary}", "conv=fsync", "status=none", input=content, privileged=True),
        command("chmod", mode, temporary, privileged=True),
        command("mv", "-f", temporary, file, privileged=True),
        command("sync", directory, privileged=True),
    ]


def exists(file: str) -> Command:
    """Succeeds when file exists."""
    return command("test", "-e", file, query=True)


def remove(file: str) -> Command:
    return command("rm", "-f", file, privileged=True)


def list_files(conf_dir: str) -> Command:
    """Prints the names of the target files, one a line; NotFound without conf_dir."""
    return command("find", conf_dir, "-maxdepth", "1", "-name", "*.conf", "-printf", "%f\\n",
                   privileged=True, query=True,
                   explain=lambda err: NotFound(f"no {conf_dir} on {err.host}") if "No such file" in err.stderr
                   else None)


def read(file: str) -> Command:
    return command("cat", "--", file, privileged=True, query=True)
