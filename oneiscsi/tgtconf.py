"""Persistence: one tgt config file per one-iscsi target on the target server.

The files are in the format of tgt's targets.conf, in a directory of their own
(CONF_DIR) that tgt's configuration includes, so tgt's own start-up brings
the targets back; `one-iscsi target restore` reads them back into a running
tgtd. Written atomically (temporary file, fsync, rename), mode 0600, in a
0700 directory: they hold CHAP passwords. Pure: the file I/O is Commands.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from .command import Command, command
from .errors import NotFound, OneIscsiError

HEADER = "# Written by one-iscsi; `one-iscsi target restore` reads it back. Do not edit.\n"
INITIATOR_NAME_PREFIXES = ("iqn.", "eui.", "naa.")


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


def render(spec: TargetSpec) -> str:
    lines = [HEADER.rstrip("\n"), f"<target {spec.iqn}>"]
    lines += [f"    backing-store {store}" for store in spec.backing_stores]
    lines += [f"    initiator-address {address}" for address in spec.addresses]
    lines += [f"    initiator-name {name}" for name in spec.initiator_names]
    if spec.chap_user:
        lines.append(f"    incominguser {spec.chap_user} {spec.chap_password}")
    lines.append("</target>")
    return "\n".join(lines) + "\n"


def parse(text: str, origin: str = "target file") -> TargetSpec:
    """Read back a file written by render()."""
    iqn, stores, initiators, user, password = "", [], [], "", ""
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "<target" and len(words) == 2:
            iqn = words[1].rstrip(">")
        elif words[0] == "backing-store" and len(words) >= 2:
            stores.append(line.split(None, 1)[1].strip())
        elif words[0] in ("initiator-address", "initiator-name") and len(words) == 2:
            initiators.append(words[1])
        elif words[0] == "incominguser" and len(words) == 3:
            user, password = words[1], words[2]
    if not iqn:
        raise OneIscsiError(f"{origin} has no <target IQN> section")
    return TargetSpec(iqn, tuple(stores), tuple(initiators) or ("ALL",), user, password)


def path(conf_dir: str, iqn: str) -> str:
    return posixpath.join(conf_dir, f"{iqn}.conf")


def include_path(conf_dir: str) -> str:
    """tgt's conf.d includes *.conf files: this one includes CONF_DIR."""
    return conf_dir.rstrip("/") + ".conf"


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
