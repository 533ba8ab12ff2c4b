"""The program one-iscsi pipes to `python3 -` on a target server that runs
LIO (TARGET=lio): one step on the kernel's target through rtslib-fb, the
library targetcli is built on. It is never imported by one-iscsi; lio.py
sends its text.

    sudo python3 - < (this program, then a last line: main(REQUEST))

lio.py adds that last line: REQUEST is the text of one JSON object with
"op" and that op's fields, as a Python string (not an argument, which any
user of the server could read in ps: it may hold a CHAP password). The
answer is one JSON object on stdout. Exit 0: done; 3: refused or
failed, {"error": TEXT, "kind": KIND}, KIND one of exists, missing, busy,
locked, failed.

The saved configuration (SAVE, the file rtslib-fb-targetctl restores at
boot) is changed only in the entries of the target and storage object at
hand, read and rewritten (temporary file, fsync, rename, mode 0600) under
targetcli's own lock (LOCK), so that neither another one-iscsi nor an admin's
targetcli loses an entry. Everything is checked by one-iscsi before it gets
here; what reaches configfs is only what it validated.
"""
import contextlib
import fcntl
import json
import os
import signal
import stat
import sys

CONFIGFS = "/sys/kernel/config/target"
# kind (rtslib's plugin name) -> its class, and the prefix of its HBAs' directories in configfs
STORAGE = {"block": ("BlockStorageObject", "iblock"), "fileio": ("FileIOStorageObject", "fileio")}
FAILED = 3


class Refused(Exception):
    def __init__(self, kind, text):
        super().__init__(text)
        self.kind = kind


def rtslib():
    try:
        import rtslib_fb
    except ImportError:
        raise Refused("failed", "python3-rtslib-fb is not installed (rtslib_fb cannot be imported)") from None
    return rtslib_fb


def target_dir(iqn):
    return f"{CONFIGFS}/iscsi/{iqn}"


def lookup(iqn):
    """The target of iqn, or None: a look at its configfs directory, not a listing."""
    if not os.path.isdir(target_dir(iqn)):
        return None
    lib = rtslib()
    return lib.Target(lib.FabricModule("iscsi"), iqn, mode="lookup")


def storage_object(kind, name):
    """The storage object of that kind and name, or None."""
    if kind not in STORAGE:
        return None
    class_name, hba = STORAGE[kind]
    core = f"{CONFIGFS}/core"
    hbas = [entry for entry in os.listdir(core) if entry.startswith(hba + "_")] if os.path.isdir(core) else []
    if not any(os.path.isdir(f"{core}/{hba}/{name}") for hba in hbas):
        return None
    return getattr(rtslib(), class_name)(name)


def new_storage_object(lib, name, path):
    """A block storage object of a block device, else a fileio one of the
    file at path (rtslib wants a file's size)."""
    if stat.S_ISBLK(os.stat(path).st_mode):
        return lib.BlockStorageObject(name, dev=path)
    return lib.FileIOStorageObject(name, dev=path, size=os.path.getsize(path), write_back=False)


def sessions(tpg):
    """[{"initiator": NAME, "addresses": [...]}] of the TPG: explicit ACLs'
    sessions and the dynamic ones (generate_node_acls)."""
    found = []
    for acl in tpg.node_acls:
        session = acl.session
        if session:
            found.append({"initiator": acl.node_wwn,
                          "addresses": sorted(c.get("address", "") for c in session.get("connections", []))})
    dynamic = os.path.join(tpg.path, "dynamic_sessions")
    if os.path.exists(dynamic):
        with open(dynamic) as handle:
            names = handle.read().replace("\0", "\n").split()
        known = {entry["initiator"] for entry in found}
        found.extend({"initiator": name, "addresses": []} for name in names if name not in known)
    return found


def describe(target, secrets=False):
    """The target as one-iscsi reports it (lio.target reads it); with
    secrets, the CHAP password too."""
    luns, acl, chap, password, found = [], [], None, None, []
    for tpg in target.tpgs:
        for lun in tpg.luns:
            so = lun.storage_object
            luns.append({"lun": lun.lun, "path": so.udev_path, "name": so.name, "plugin": so.plugin,
                         "size": size_of(so.udev_path)})
        if int(tpg.get_attribute("generate_node_acls")):
            acl.append("ALL")
        acl.extend(node.node_wwn for node in tpg.node_acls)
        chap, password = (chap, password) if chap else chap_of(tpg)
        found.extend(sessions(tpg))
    described = {"iqn": target.wwn, "luns": sorted(luns, key=lambda lun: lun["lun"]), "acl": acl,
                 "chap_user": chap or "", "sessions": found}
    if secrets:
        described["chap_password"] = password or ""
    return described


def size_of(path):
    """The size in bytes of a device or file, 0 if it cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return 0
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def load(path):
    """The saved configuration at path (empty if there is none)."""
    try:
        with open(path) as handle:
            config = json.load(handle)
    except FileNotFoundError:
        config = {}
    except ValueError as error:
        raise Refused("failed", f"{path} is not JSON ({error}): mend or remove it") from None
    for key in ("fabric_modules", "storage_objects", "targets"):
        config.setdefault(key, [])
    return config


def take_lock(handle, wait):
    """flock handle, waiting for it at most wait seconds (TimeoutError):
    a blocking flock that SIGALRM interrupts, no polling."""
    def expired(signum, frame):
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, max(wait, 0.001))
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Saved:
    """The saved configuration, read and rewritten under LOCK."""

    def __init__(self, request):
        self.path, self.lock, self.wait = request["save"], request["lock"], float(request.get("lock_timeout", 60))

    def __enter__(self):
        self.handle = open(self.lock, "a")
        try:
            take_lock(self.handle, self.wait)
            self.config = load(self.path)
        except TimeoutError:
            self.handle.close()
            raise Refused("locked", f"{self.lock} is held for more than {self.wait:g} s") from None
        except Refused:
            self.handle.close()
            raise
        return self

    def replace(self, iqn, names, target=None, objects=()):
        """Drop the saved entries of target iqn and of the storage objects
        named in names ({(plugin, name)}) that LIO no longer has, then add
        target's and objects' own (an object another target still has keeps
        its entry)."""
        config = self.config
        gone = {(plugin, name) for plugin, name in names if storage_object(plugin, name) is None}
        gone |= {(so.plugin, so.name) for so in objects}
        config["targets"] = [t for t in config["targets"] if t.get("wwn") != iqn]
        config["storage_objects"] = [so for so in config["storage_objects"]
                                     if (so.get("plugin"), so.get("name")) not in gone]
        if target is not None:
            config["targets"].append(target.dump())
        config["storage_objects"].extend(so.dump() for so in objects)
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        temporary = f"{self.path}.one-iscsi.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(config, handle, sort_keys=True, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)

    def saved_objects(self, iqn):
        """{(plugin, name)} of the storage objects the saved target iqn's LUNs name."""
        return {found for target in self.config["targets"] if target.get("wwn") == iqn
                for found in saved_luns(target)} - {("", "")}

    def __exit__(self, *error):
        self.handle.close()


def new_target(lib, iqn, portal, undo):
    """The target iqn with TPG 1 and its portal (ADDRESS, PORT); its undo first on undo."""
    target = lib.Target(lib.FabricModule("iscsi"), iqn, mode="create")
    undo.insert(0, target.delete)
    tpg = lib.TPG(target, 1, mode="create")
    address, port = portal
    lib.NetworkPortal(tpg, address, int(port), mode="create")
    return target, tpg


def saved_luns(entry):
    """[(plugin, name)] of the storage objects a saved target's LUNs name
    (rtslib saves them as /backstores/PLUGIN/NAME)."""
    found = []
    for tpg in entry.get("tpgs", []):
        for lun in tpg.get("luns", []):
            parts = lun.get("storage_object", "").strip("/").split("/")
            found.append((parts[1], parts[2]) if len(parts) == 3 else ("", ""))
    return found


def drop_unused(so):
    """Delete the storage object so (None: there is none) unless a LUN uses it."""
    if so is not None and not list(so.attached_luns):
        so.delete()


def take_back(undo):
    """Run the steps of undo in their order; an error of one does not stop
    the others (the first error is the one to report)."""
    for step in undo:
        try:
            step()
        except Exception:
            pass


def delete(request):
    """The target and the storage objects of its LUNs (none other uses
    them), and the objects named in the request that no target uses (left
    by a run killed between making one and its target), then their saved
    entries (a saved target's own, also when LIO lacks it); refused while
    an initiator is logged in unless force. A missing target is not an
    error."""
    iqn = request["iqn"]
    target = lookup(iqn)
    described = describe(target) if target is not None else None
    if described and described["sessions"] and not request.get("force"):
        users = ", ".join(sorted({entry["initiator"] for entry in described["sessions"]}))
        raise Refused("busy", f"target {iqn} is in use by {users}")
    named = {(plugin, name) for plugin, name in request.get("objects", [])}  # kinds are rtslib's plugin names
    with Saved(request) as saved:
        named |= saved.saved_objects(iqn)
        if target is not None:
            named |= {(so.plugin, so.name) for so in objects_of(target)}
            target.delete()
        for plugin, name in sorted(named):
            drop_unused(storage_object(plugin, name))
        saved.replace(iqn, named)
    return {"deleted": target is not None, "target": described}


def show(request):
    target = lookup(request["iqn"])
    if target is None:
        raise Refused("missing", f"no target {request['iqn']}")
    return {"target": describe(target, bool(request.get("secrets")))}


def list_targets(request):
    """Every iSCSI target LIO has, described."""
    fabric = f"{CONFIGFS}/iscsi"
    iqns = sorted(entry for entry in os.listdir(fabric) if entry.startswith(("iqn.", "eui.", "naa."))) \
        if os.path.isdir(fabric) else []
    if not iqns:
        return {"targets": []}
    lib = rtslib()
    return {"targets": [describe(lib.Target(lib.FabricModule("iscsi"), iqn, mode="lookup")) for iqn in iqns]}


def restore(request):
    """Make again each saved iSCSI target whose name starts with PREFIX that
    LIO does not have, with its storage objects (one left without a target
    is taken away first); the others are left as they are."""
    lib = rtslib()
    restored, present, failed = [], [], []
    config = load(request["save"])  # only read: the file is only ever replaced whole
    for entry in config["targets"]:
        iqn = entry.get("wwn", "")
        if entry.get("fabric") != "iscsi" or not iqn.startswith(request["prefix"]):
            continue
        if lookup(iqn) is not None:
            present.append(iqn)
            continue
        wanted = set(saved_luns(entry))
        objects = [so for so in config["storage_objects"] if (so.get("plugin"), so.get("name")) in wanted]
        try:
            for so in objects:  # one left without a target would stop rtslib's restore
                drop_unused(storage_object(so.get("plugin"), so["name"]))
            errors = lib.RTSRoot().restore({"storage_objects": objects, "targets": [entry]}, abort_on_error=True)
            if errors:
                raise Refused("failed", "; ".join(map(str, errors)))
            restored.append(iqn)
        except Exception as error:  # one target's failure is reported; the others still come back
            target = lookup(iqn)
            if target is not None:
                target.delete()
            for so in objects:
                drop_unused(storage_object(so.get("plugin"), so["name"]))
            failed.append([iqn, str(error) or type(error).__name__])
    return {"restored": restored, "present": present, "failed": failed}


def inventory(request):
    """Every iSCSI target LIO has, described, and every saved one with the
    devices of its LUNs' storage objects (read without the lock: the file
    is only ever replaced whole)."""
    config = load(request["save"])
    devices = {(so.get("plugin"), so.get("name")): so.get("dev", "") for so in config["storage_objects"]}
    saved = {}
    for entry in config["targets"]:
        if entry.get("fabric") == "iscsi" and entry.get("wwn"):
            saved[entry["wwn"]] = [devices.get(named, "") for named in saved_luns(entry)]
    return {"targets": list_targets(request)["targets"], "saved": saved}


def change(request):
    """Edits of one target, all or nothing, then its saved entries. EDITS,
    in order, each a list: ["new"], first, makes the target (TPG 1, portal,
    nobody let in; enabled after the other edits, and a storage object no
    LUN uses is made anew by its lun_add); ["allow", NAMES] and ["deny",
    NAMES], NAMES initiator names or ["ALL"]; ["chap", USER, PASSWORD] ("",
    "" takes CHAP away); ["lun_add", LUN, PATH, NAME] (a block device or a
    file); ["lun_remove", LUN]. force: also with sessions (lun_remove) or a
    backing store another target has (lun_add). persist false: not saved (a
    change for the moment, such as a copy's own ACL)."""
    lib = rtslib()
    iqn, edits = request["iqn"], request["edits"]
    target = lookup(iqn)
    if target is None and edits[0] != ["new"]:
        raise Refused("missing", f"no target {iqn}")
    if target is not None and edits[0] == ["new"]:
        return {"exists": True, "target": describe(target)}
    undo, notes = [], []
    before = set() if target is None else {(so.plugin, so.name) for so in objects_of(target)}
    persist = request.get("persist", True)  # a change for the moment takes no lock and reads no saved file
    with Saved(request) if persist else contextlib.nullcontext() as saved:  # first: nothing changes unless saved
        try:
            for edit in edits:
                if edit[0] == "new":
                    target, tpg = new_target(lib, iqn, request["portal"], undo)
                    tpg.set_attribute("generate_node_acls", 0)
                    tpg.set_attribute("authentication", 0)
                else:
                    EDITS[edit[0]](lib, tpg_of(target), edit[1:], request, undo, notes)
            if edits[0] == ["new"]:  # last: no login before the LUN, its ACLs and CHAP are all there
                tpg.enable = True
            after = objects_of(target)
            if persist:
                saved.replace(iqn, before | {(so.plugin, so.name) for so in after}, target, after)
            return {"target": describe(target), "notes": notes}
        except BaseException:
            take_back(undo)
            raise


def objects_of(target):
    return [lun.storage_object for tpg in target.tpgs for lun in tpg.luns]


def tpg_of(target):
    tpgs = [tpg for tpg in target.tpgs if tpg.tag == 1]
    if not tpgs:
        raise Refused("failed", f"target {target.wwn} has no TPG 1")
    return tpgs[0]


def chap_of(tpg):
    """The CHAP account the target asks for: the TPG's, else its ACLs'."""
    if tpg.chap_userid:
        return tpg.chap_userid, tpg.chap_password
    for acl in tpg.node_acls:
        if acl.chap_userid:
            return acl.chap_userid, acl.chap_password
    return "", ""


def allow(lib, tpg, args, request, undo, notes):
    names = args[0]
    if names == ["ALL"]:
        if int(tpg.get_attribute("generate_node_acls")):
            notes.append("ALL was allowed already")
            return
        # generate_node_acls last: a login before the others would be read-only for its whole session
        for attribute, value in (("cache_dynamic_acls", 1), ("demo_mode_write_protect", 0),
                                 ("generate_node_acls", 1)):
            old = tpg.get_attribute(attribute)
            tpg.set_attribute(attribute, value)
            undo.insert(0, lambda attribute=attribute, old=old: tpg.set_attribute(attribute, old))
        return
    user, password = chap_of(tpg)
    known = {acl.node_wwn for acl in tpg.node_acls}
    for name in names:
        if name in known:
            notes.append(f"{name} was allowed already")
            continue
        acl = lib.NodeACL(tpg, name, mode="create")
        undo.insert(0, acl.delete)
        for lun in tpg.luns:
            lib.MappedLUN(acl, lun.lun, lun)
        if user:
            set_chap(acl, user, password)


def deny(lib, tpg, args, request, undo, notes):
    names = args[0]
    if names == ["ALL"]:
        if not int(tpg.get_attribute("generate_node_acls")):
            raise Refused("missing", "ALL is not in the ACL")
        tpg.set_attribute("generate_node_acls", 0)
        undo.insert(0, lambda: tpg.set_attribute("generate_node_acls", 1))
        return
    acls = {acl.node_wwn: acl for acl in tpg.node_acls}
    missing = [name for name in names if name not in acls]
    if missing:
        raise Refused("missing", f"{missing[0]} is not in the ACL")
    for name in names:
        acls[name].delete()  # not taken back: the ACL's sessions are gone with it


def chap(lib, tpg, account, request, undo, notes):
    """The account on the TPG (ALL's sessions use it, ACLs added later take
    it) and on every ACL; "" "" takes it away."""
    user, password = account
    for holder in [tpg, *tpg.node_acls]:
        old = (holder.chap_userid, holder.chap_password)
        set_chap(holder, user, password)
        undo.insert(0, lambda holder=holder, old=old: set_chap(holder, *old))
    old_authentication = tpg.get_attribute("authentication")
    tpg.set_attribute("authentication", 1 if user else 0)
    undo.insert(0, lambda: tpg.set_attribute("authentication", old_authentication))


def set_chap(holder, user, password):
    holder.chap_userid, holder.chap_password = user, password


def lun_add(lib, tpg, edit, request, undo, notes):
    number, path, name = int(edit[0]), edit[1], edit[2]
    if any(lun.lun == number for lun in tpg.luns):
        raise Refused("exists", f"LUN {number} of {tpg.parent_target.wwn} is in use: choose another --lun")
    if not os.path.exists(path):
        raise Refused("missing", f"no such file or device: {path}")
    kind = "block" if stat.S_ISBLK(os.stat(path).st_mode) else "fileio"
    so = storage_object(kind, name)
    creating = request["edits"][0] == ["new"]
    if so is not None and creating and not list(so.attached_luns):
        # left by a create killed before it could take it back; a fileio one may hold a file since removed
        so.delete()
        so = None
    if so is not None and so.udev_path != path:
        raise Refused("exists", f"storage object {name} is of {so.udev_path}, not {path}")
    if so is not None:
        if list(so.attached_luns) and not request.get("force"):
            raise Refused("exists", f"{path} is already a LUN of another target (storage object {name})"
                                    + ("" if creating else ": one backing store, one target "
                                                           "(--force to bind it anyway)"))
    else:
        so = new_storage_object(lib, name, path)
        undo.append(so.delete)
    lun = lib.LUN(tpg, number, so)
    undo.insert(0, lun.delete)
    for acl in tpg.node_acls:
        lib.MappedLUN(acl, number, lun)


def lun_remove(lib, tpg, edit, request, undo, notes):
    number = int(edit[0])
    found = [lun for lun in tpg.luns if lun.lun == number]
    if not found:
        raise Refused("missing", f"{tpg.parent_target.wwn} has no LUN {number}")
    users = sorted({entry["initiator"] for entry in sessions(tpg)})
    if users and not request.get("force"):
        raise Refused("busy", f"{tpg.parent_target.wwn} has sessions ({', '.join(users)}): log them out first, "
                              "or use --force")
    so = found[0].storage_object
    found[0].delete()
    drop_unused(so)


EDITS = {"allow": allow, "deny": deny, "chap": chap, "lun_add": lun_add, "lun_remove": lun_remove}


OPS = {"delete": delete, "show": show, "list": list_targets, "restore": restore,
       "inventory": inventory, "change": change}


def main(text):
    try:
        request = json.loads(text)
        answer = OPS[request["op"]](request)
    except Refused as refused:
        answer, rc = {"error": str(refused), "kind": refused.kind}, FAILED
    except Exception as error:  # rtslib's own errors (RTSLibError) say what the kernel refused
        answer, rc = {"error": str(error) or type(error).__name__, "kind": "failed"}, FAILED
    else:
        rc = 0
    json.dump(answer, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    sys.exit(rc)
