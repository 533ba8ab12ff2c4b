"""LIO, the kernel's own target (TARGET=lio): the requests one-iscsi sends
to lioprogram.py, run on the target server as `sudo python3 -` with the
program and the request on stdin (one command of the step's ssh session), and
what its answers mean. Pure: builds commands, reads answers.

On LIO a target has no TID: it is known by its name. Its storage object
(the backstore) is named after the volume, VG.LV. Access is by initiator
name only (LIO has no address rules): INITIATORS=ALL is LIO's
generate_node_acls, a list of names one node ACL each, with LUN 1 mapped;
an address or network in INITIATORS is refused before anything is made.
CHAP is per ACL, or the TPG's own with ALL; authentication=1 then makes LIO
ask for it.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

from .command import Command, command
from .errors import InvalidInput, NotFound, OneIscsiError, shown
from .tgt import Lun, Nexus, Target
from .tgtconf import TargetSpec, is_initiator_name
from .units import MIB

CONFIGFS = "/sys/kernel/config/target"
SAVE_FILE = "/etc/rtslib-fb-target/saveconfig.json"  # what rtslib-fb-targetctl restores at boot
LOCK_FILE = "/var/run/targetcli.lock"  # targetcli's own lock: an admin's targetcli waits too
REFUSED_RC = 3  # lioprogram.py: refused or failed, the answer says why


@lru_cache(maxsize=1)
def program() -> str:
    return Path(__file__).with_name("lioprogram.py").read_text()


def _request(op: str, query: bool = False, **fields) -> Command:
    """`python3 -` reading the program and, as its last line, the call with
    this request: nothing of it on the command line (ps shows that)."""
    import json  # only on LIO: not in every action's start-up

    text = json.dumps({"op": op, "save": SAVE_FILE, "lock": LOCK_FILE, **fields}, sort_keys=True)
    return command("python3", "-", input=f"{program()}\nmain({text!r})\n", privileged=True, query=query,
                   accept=[REFUSED_RC])


def storage_kind(backend: str) -> str:
    """The storage object's kind for a BACKEND: an LV is a block device, the file backend's a file."""
    return "fileio" if backend == "file" else "block"


def exported(iqn: str) -> Command:
    """Succeeds while LIO still has LUN 1 of the target: a look at configfs,
    no sudo, no listing."""
    return command("test", "-d", f"{CONFIGFS}/iscsi/{iqn}/tpgt_1/lun/lun_1", query=True,
                   explain=lambda err: OneIscsiError(f"target {iqn} is no longer exported on {err.host}"))


def lower_case(what: str, name: str) -> str:
    """name, refused with capitals: LIO keeps target and initiator names
    in lower case, so a name with capitals would never be found again."""
    if name != name.lower():
        raise InvalidInput(f"LIO keeps names in lower case: {what} {shown(name)} has capitals (on LIO, "
                           "HOST, VG_NAME, BASE_IQN and initiator names must be lower case)")
    return name


def names_only(initiators: Sequence[str], where: str = "") -> list[str]:
    """initiators (ALL, initiator names) as LIO takes them; an address or
    network is refused (LIO has no address rules), and so is a name with
    capitals."""
    addresses = [entry for entry in initiators if entry != "ALL" and not is_initiator_name(entry)]
    if addresses:
        raise InvalidInput(f"LIO admits initiators by name only: {shown(' '.join(addresses))}{where} is an address "
                           "(use initiator names, or ALL)")
    return [entry if entry == "ALL" else lower_case("initiator name", entry) for entry in initiators]


def has_target(iqn: str) -> Command:
    """Succeeds when LIO has a target of that name: a look at configfs."""
    return command("test", "-d", f"{CONFIGFS}/iscsi/{iqn}", query=True)


def object_name(device: str) -> str:
    """The storage object's name: the device's last two components (VG.LV,
    or the file backend's VG.LV file)."""
    parent, _, leaf = device.rstrip("/").rpartition("/")
    return f"{parent.rpartition('/')[2]}.{leaf}"


def create(spec: TargetSpec, portal_port: int, lock_timeout: float) -> Command:
    """Make the target of spec with its one LUN (spec.luns) on portal
    0.0.0.0:portal_port, and save it: a change whose first edit makes the
    target. CHAP comes before anyone is let in, so that no initiator logs in
    without it even for a moment."""
    names = names_only(spec.initiators, " in INITIATORS")
    [(lun, device)] = spec.luns
    lower_case("target name", spec.iqn)
    edits = [["new"], *([["chap", spec.chap_user, spec.chap_password]] if spec.chap_user else []),
             ["lun_add", lun, device, object_name(device)], ["allow", ["ALL"] if "ALL" in names else names]]
    return change(spec.iqn, edits, portal_port, lock_timeout)


def delete(iqn: str, devices: Sequence[str] = (), kind: str = "block", force: bool = False) -> Command:
    """Delete the target and its storage objects (also those of devices,
    left without a target), and their saved entries."""
    return _request("delete", iqn=iqn, objects=[[kind, object_name(device)] for device in devices], force=force)


def show(iqn: str, secrets: bool = False) -> Command:
    """The target described; with secrets, its CHAP password too (a private
    copy of an image takes the image's access rules)."""
    return _request("show", query=True, iqn=iqn, secrets=secrets)


def list_targets() -> Command:
    return _request("list", query=True)


def change(iqn: str, edits: Sequence[list], portal_port: int, lock_timeout: float, force: bool = False,
           persist: bool = True) -> Command:
    """Edits of one target (lioprogram.change says which), all or nothing,
    then saved unless not persist."""
    return _request("change", iqn=iqn, edits=[list(edit) for edit in edits], portal=["0.0.0.0", portal_port],
                    lock_timeout=lock_timeout, force=force, persist=persist)


def inventory() -> Command:
    """Every target LIO has, and every saved one with its LUNs' devices."""
    return _request("inventory", query=True)


def restore(prefix: str) -> Command:
    """Make again the saved targets named prefix... that LIO lacks."""
    return _request("restore", prefix=prefix)


def answer(text: str, host: str) -> dict:
    """The program's answer; its refusal as the error it stands for."""
    import json

    try:
        data = json.loads(text)
    except ValueError:
        raise OneIscsiError(f"unexpected answer of LIO on {host}: {shown(text.strip()[:200])!r}") from None
    if not isinstance(data, dict):
        raise OneIscsiError(f"unexpected answer of LIO on {host}: {shown(text.strip()[:200])!r}")
    error = data.get("error")
    if error is None:
        return data
    if data.get("kind") == "missing":
        raise NotFound(f"{error} on {host}")
    raise OneIscsiError(f"LIO on {host}: {error}")


def target(data: dict) -> Target:
    """A described target as tgt.Target, the shape every listing has (TID 0: LIO has none)."""
    luns = tuple(Lun(int(lun["lun"]), str(lun["path"]), int(lun.get("size", 0)) // MIB, str(lun.get("plugin", "")))
                 for lun in data["luns"])
    sessions = tuple(Nexus(str(entry["initiator"]), tuple(entry.get("addresses", ())))
                     for entry in data.get("sessions", ()))
    chap = (data["chap_user"],) if data.get("chap_user") else ()
    return Target(None, str(data["iqn"]), luns, tuple(data.get("acl", ())), chap, sessions)


def found(text: str, host: str) -> Optional[Target]:
    """The target a show() answered, None if there is none."""
    try:
        return target(answer(text, host)["target"])
    except NotFound:
        return None
