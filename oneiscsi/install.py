"""`one-iscsi install`: the remotes into OpenNebula's remotes tree, the shell
completions and the man page into the system's places. An existing
iscsi.conf is kept; a new one is private to OpenNebula's user (it may get
CHAP_PASSWORD)."""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .completion import FILES as COMPLETION_FILES
from .errors import InvalidInput, OneIscsiError

DEFAULT_REMOTES = "/var/lib/one/remotes"
DEFAULT_SHARE = "/usr/local/share"
REMOTES = ("datastore/iscsi", "tm/iscsi")
KEEP = ("iscsi.conf",)
# where each completion goes under the share directory, named as each shell looks for it
COMPLETION_PLACES = {"bash": "bash-completion/completions/one-iscsi",
                     "zsh": "zsh/site-functions/_one-iscsi",
                     "fish": "fish/vendor_completions.d/one-iscsi.fish"}


@dataclass(frozen=True)
class Copy:
    source: Path
    target: Path
    mode: int
    keep_existing: bool = False
    owner_of: Optional[Path] = None  # installed by root, the file gets this directory's owner

    def owner(self) -> Optional[tuple[int, int]]:
        """The (uid, gid) to give the file, if any."""
        if self.owner_of is None or os.geteuid() != 0 or not self.owner_of.exists():
            return None
        status = self.owner_of.stat()
        return status.st_uid, status.st_gid

    def describe(self) -> str:
        if self.keep_existing and self.target.exists():
            return f"keep {self.target} (exists)"
        owner = self.owner()
        chown = f" -o {owner[0]} -g {owner[1]}" if owner else ""
        return f"install -m {self.mode:o}{chown} {self.source} {self.target}"


def data_dir() -> Path:
    """Where remotes/, completions/ and man/ are: the installed package's
    share directory, or the source checkout."""
    for candidate in (Path(sys.prefix) / "share" / "one-iscsi", Path(__file__).resolve().parents[1]):
        if (candidate / "remotes").is_dir():
            return candidate
    raise OneIscsiError("cannot find the remotes, completions and man page of this installation")


def plan(remotes_prefix: str, share_prefix: str) -> list[Copy]:
    if not Path(remotes_prefix).is_dir():  # a typo must not grow a tree OpenNebula never reads
        raise InvalidInput(f"{remotes_prefix} is not a directory: --prefix is OpenNebula's remotes tree "
                           "(/var/lib/one/remotes, or $ONE_LOCATION/var/remotes)")
    data = data_dir()
    copies = []
    for folder in REMOTES:
        for source in sorted((data / "remotes" / folder).iterdir()):
            target = Path(remotes_prefix) / folder / source.name
            if source.name in KEEP:  # OpenNebula's user (oneadmin) owns its remotes tree and reads this as itself
                copies.append(Copy(source, target, 0o600, keep_existing=True, owner_of=Path(remotes_prefix)))
            else:
                copies.append(Copy(source, target, 0o755))
    for shell, place in COMPLETION_PLACES.items():
        copies.append(Copy(data / "completions" / COMPLETION_FILES[shell], Path(share_prefix) / place, 0o644))
    copies.append(Copy(data / "man" / "one-iscsi.1", Path(share_prefix) / "man" / "man1" / "one-iscsi.1", 0o644))
    return copies


def oned_conf(version: tuple[int, ...]) -> str:
    """What oned.conf needs for the iscsi drivers, in the form of that version:
    the driver's name in the -d lists of TM_MAD and DATASTORE_MAD (shown with
    that version's own drivers), and from 5.0 on the TM_MAD_CONF and
    DS_MAD_CONF entries. 3.x has neither entry, nor non-persistent images."""
    shown = ".".join(map(str, version))
    if version < (4,):
        return (f"# oned.conf of OpenNebula {shown}: add iscsi to the -d lists, e.g.\n"
                'TM_MAD = [ executable = "one_tm",\n'
                '           arguments = "-t 15 -d dummy,lvm,shared,qcow2,ssh,vmware,iscsi" ]\n'
                'DATASTORE_MAD = [ executable = "one_datastore",\n'
                '                  arguments = "-t 15 -d fs,vmware,iscsi" ]\n')
    text = (f"# oned.conf of OpenNebula {shown}: add iscsi to the -d lists of TM_MAD and DATASTORE_MAD\n"
            '# (arguments = "... -d <the drivers there>,iscsi"), then add:\n')
    if version >= (5,):
        text += ('TM_MAD_CONF = [ NAME = "iscsi", LN_TARGET = "NONE", CLONE_TARGET = "SELF", SHARED = "YES",\n'
                 '  DRIVER = "raw", DISK_TYPE = "BLOCK", ALLOW_ORPHANS = "YES", DS_MIGRATE = "NO" ]\n'
                 'DS_MAD_CONF = [ NAME = "iscsi", REQUIRED_ATTRS = "", PERSISTENT_ONLY = "NO" ]\n')
    else:
        text += 'TM_MAD_CONF = [ name = "iscsi", ln_target = "NONE", clone_target = "SELF", shared = "yes" ]\n'
    return text


def write_text(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as err:
        raise OneIscsiError(f"cannot write {path}: {err.strerror}") from None


def install(copies: list[Copy]) -> list[str]:
    """Carry out the plan; returns what was done, a line each."""
    done = []
    for copy in copies:
        done.append(copy.describe())
        if copy.keep_existing and copy.target.exists():
            continue
        try:
            owner = copy.owner()
            copy.target.parent.mkdir(parents=True, exist_ok=True)
            temporary = copy.target.with_name(f".{copy.target.name}.tmp")
            shutil.copyfile(copy.source, temporary)
            temporary.chmod(copy.mode)
            if owner:
                os.chown(temporary, *owner)
            temporary.replace(copy.target)
        except OSError as err:
            raise OneIscsiError(f"cannot install {copy.target}: {err.strerror}") from None
    return done
