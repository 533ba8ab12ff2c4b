"""The commands the actions are expected to run on a target server, as argv
lists, and tgtadm listings to answer with: shared by the unit tests of
targets.py and datastore.py."""
from oneiscsi import tgt, tgtconf
from oneiscsi.values import MAX_TID

from .paths import DATA

SHOWN = (DATA / "tgtadm-show-target.txt").read_text()  # TIDs 1, 3, 4
BASE = "iqn.2012-02.org.opennebula"
IQN = f"{BASE}:tgt1.vg-one.lv-one-7"
LISTED = f"{BASE}:localhost.vg-one.lv-one-5"   # TID 1 of SHOWN, LUN 1 on /tmp/cap/a.img, two sessions
LISTED_50 = f"{BASE}:localhost.vg-one.lv-one-50"  # TID 3 of SHOWN, two LUNs
CONF_DIR = "/etc/tgt/conf.d/one-iscsi"
INCLUDE = "/etc/tgt/conf.d/one-iscsi.conf"
ALLOWED = ("10.0.0.0/24", "iqn.1993-08.org.debian:01:abc")
CHAP = ("one", "secret-pass-12")
HINT = "/run/lock/one-iscsi.lock.next-tid"  # beside the default LOCK_FILE


def tgtadm(*args: str) -> list[str]:
    return ["tgtadm", "--lld", "iscsi", *args]


SHOW = tgtadm("--op", "show", "--mode", "target")


def new_target(tid: int, iqn: str = IQN) -> list[str]:
    return tgtadm("--op", "new", "--mode", "target", "--tid", str(tid), "--targetname", iqn)


def make_target(start: int, iqn: str = IQN, automatic: bool = True, base: int = 1) -> list[str]:
    """tgt.NEW_TARGET from TID start (automatic: trying the TIDs after it, leaving the hint)."""
    return ["sh", "-c", tgt.NEW_TARGET, "new-target", str(start), str(base), str(MAX_TID),
            str(tgt.NEW_TARGET_TRIES if automatic else 1), iqn, HINT if automatic else "", "tgtadm"]


READ_HINT = ["cat", "--", HINT]


def show_tid(tid: int) -> list[str]:
    return tgtadm("--op", "show", "--mode", "target", "--tid", str(tid))


def show_conn(tid: int) -> list[str]:
    return tgtadm("--op", "show", "--mode", "conn", "--tid", str(tid))


def mark_all(*marks: tuple[int, str]) -> list[str]:
    """tgt.MARK_TARGETS of (TID, IQN) pairs."""
    return ["sh", "-c", tgt.MARK_TARGETS, "mark-targets", "tgtadm",
            *(word for tid, iqn in marks for word in (str(tid), iqn))]


def marked(iqn: str = IQN) -> str:
    """What `show --tid` prints of a target marked with iqn."""
    return f"RedirectAddress={iqn}\nRedirectPort=\nRedirectReason=Unknown\n"


PARAMETERS = "nop_interval=0\nnop_count=0\nMaxRecvDataSegmentLength=8192\n"  # `show --tid` of an unmarked target


def cat(iqn: str = IQN) -> list[str]:
    return ["cat", "--", conf(iqn)]


def on_file(recorder, spec) -> None:
    """CONF_DIR holds the saved file of spec, read with cat."""
    recorder.answer(*cat(spec.iqn), out=tgtconf.render(spec))


def no_file(recorder, iqn: str = IQN) -> None:
    recorder.fail(*cat(iqn), stderr=f"cat: {conf(iqn)}: No such file or directory")


def delete_target(tid: int, *force: str) -> list[str]:
    return tgtadm("--op", "delete", *force, "--mode", "target", "--tid", str(tid))


def bind(tid: int, kind: str, value: str) -> list[str]:
    """kind: address or name."""
    return tgtadm("--op", "bind", "--mode", "target", "--tid", str(tid), f"--initiator-{kind}", value)


def new_lun(tid: int, store: str, lun: int = 1) -> list[str]:
    return tgtadm("--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", str(lun),
                  "--backing-store", store)


def readd_lun(tid: int, store: str) -> list[str]:
    """LUN 1 deleted and added again on the target server (tgt.READD_LUN)."""
    return ["sh", "-c", tgt.READD_LUN, "readd-lun", str(tid), store, str(tgt.READD_TRIES), "tgtadm"]


def chap(tid: int, user: str = CHAP[0], password: str = CHAP[1]) -> list[list[str]]:
    return [tgtadm("--op", "new", "--mode", "account", "--user", user, "--password", password),
            tgtadm("--op", "bind", "--mode", "account", "--tid", str(tid), "--user", user)]


def allowed(tid: int) -> list[list[str]]:
    """The access rules of ALLOWED and CHAP."""
    return [bind(tid, "address", ALLOWED[0]), bind(tid, "name", ALLOWED[1]), *chap(tid)]


def conf(iqn: str = IQN) -> str:
    return f"{CONF_DIR}/{iqn}.conf"


def forget(iqn: str = IQN) -> list[str]:
    return ["rm", "-f", conf(iqn)]


def writes(file: str, mode: str = "0600") -> list[list[str]]:
    """Writing file atomically."""
    directory, name = file.rsplit("/", 1)
    temporary = f"{directory}/.{name}.tmp"
    return [["mkdir", "-p", "-m", "0700", directory], ["dd", f"of={temporary}", "conv=fsync", "status=none"],
            ["chmod", mode, temporary], ["mv", "-f", temporary, file], ["sync", directory]]


def saved(*iqns: str) -> list[list[str]]:
    """Saving targets' config files (default: IQN's) in one go, the include of CONF_DIR being there."""
    steps = [writes(conf(iqn)) for iqn in iqns or (IQN,)]
    return [["test", "-e", INCLUDE], steps[0][0], *(step for written in steps for step in written[1:4]), steps[0][4]]


def listing(*targets: tuple) -> str:
    """`tgtadm --op show --mode target` output of targets given as
    (tid, iqn[, backing stores[, initiators logged in[, ACL[, accounts]]]])."""
    return "".join(_shown(*target) for target in targets)


def _shown(tid: int, iqn: str, stores: tuple = (), initiators: tuple = (), acl: tuple = ("ALL",),
           accounts: tuple = ()) -> str:
    lines = [f"Target {tid}: {iqn}", "    System information:", "        Driver: iscsi", "        State: ready",
             "    I_T nexus information:"]
    for number, initiator in enumerate(initiators, 1):
        lines += [f"        I_T nexus: {number}", f"            Initiator: {initiator} alias: none",
                  "            Connection: 0", "                IP Address: 10.0.0.5"]
    lines += ["    LUN information:", "        LUN: 0", "            Type: controller",
              "            Backing store path: None"]
    for lun, store in enumerate(stores, 1):
        lines += [f"        LUN: {lun}", "            Type: disk", "            Size: 8 MB, Block size: 512",
                  f"            Backing store path: {store}"]
    lines += ["    Account information:", *[f"        {user}" for user in accounts], "    ACL information:",
              *[f"        {initiator}" for initiator in acl]]
    return "\n".join(lines) + "\n"


def exported(recorder, tid: int, iqn: str = IQN, stores: tuple = (), initiators: tuple = (), host=None) -> None:
    """one-iscsi's target iqn has TID tid, as its saved file (with backing
    stores) and its mark in tgtd say, and sessions of these initiators."""
    recorder.answer(*cat(iqn), out=tgtconf.render(tgtconf.TargetSpec(iqn, stores, tid=tid)), host=host)
    recorder.answer(*show_tid(tid), out=marked(iqn), host=host)
    recorder.answer(*show_conn(tid), out="".join(f"Session: {n}\n    Connection: 0\n        Initiator: {initiator}\n"
                                                 "        IP Address: 10.0.0.5\n"
                                                 for n, initiator in enumerate(initiators, 1)), host=host)


def found(tid: int, iqn: str = IQN, sessions: bool = False) -> list[list[str]]:
    """Finding one-iscsi's target iqn of TID tid: its saved file, its mark (and its sessions), no listing."""
    return [cat(iqn), show_tid(tid), *([show_conn(tid)] if sessions else [])]


def lio_probe(iqn: str = IQN) -> list[str]:
    """The look at configfs that tells a target LIO has (datastore.on_lio_target)."""
    return ["test", "-d", f"/sys/kernel/config/target/iscsi/{iqn}"]
