"""`one-iscsi doctor`: is what one-iscsi needs in place on the target server
and on the hypervisor hosts?

Every check is a query (it changes nothing, so it runs under --dry-run too)
and gives one Check: passed, failed with what to do, or not made because a
check it depends on failed. The checks of one host run in one session; a
host that cannot be reached is one failed line, its other checks skipped.
"""
from __future__ import annotations

import fnmatch
import posixpath
import shlex
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from . import lio, lvm, tgt, tgtconf, tgtstart
from .command import command
from .config import PROGRAMS, TOOL_KEYS
from .errors import CommandError, OneIscsiError
from .liotargets import ask
from .targets import TargetServer
from .run import Runner, Session

TGT_CONF = "/etc/tgt/targets.conf"  # what tgt's start-up (`tgt-admin -e`) reads
INITIATOR_NAME_FILE = "/etc/iscsi/initiatorname.iscsi"
CONNECT_SECONDS = 5  # how long a host may take to open a TCP connection to the portal

# The tools one-iscsi runs with sudo on the target server: for every backend
# (targets; image data and the saved target files with dd; mkfs), then per
# backend. tgt-admin is not among them: tgt's own start-up runs it, one-iscsi never does.
TOOLS = ("tgtadm", "dd", "mkfs", "mkswap")
BACKEND_TOOLS = {"lvm": ("lvcreate", "lvremove", "lvextend", "lvs", "vgs", "blkdiscard", "blockdev"),
                 "file": ("truncate", "fallocate")}
KEY_OF = {program: key for key, program in TOOL_KEYS.items()}
PACKAGES = {"tgtadm": "tgt", "iscsiadm": "open-iscsi", "dd": "coreutils", "truncate": "coreutils",
            **dict.fromkeys(("lvcreate", "lvremove", "lvextend", "lvs", "vgs"), "lvm2"),
            **dict.fromkeys(("mkfs", "mkswap", "blkdiscard", "blockdev", "fallocate"), "util-linux")}

# Opens a TCP connection to host $1, port $2 with bash's /dev/tcp: bash is on
# every OpenNebula host (its drivers are bash scripts), while nc differs from
# one distribution to the next (-z is missing from some) or is not installed.
CONNECT = 'exec 3<>"/dev/tcp/$1/$2"'


@dataclass(frozen=True)
class Check:
    """One check on one host. ok: True passed, False failed, None not made
    (a check it depends on failed). detail: what was found, or what to do."""
    host: str
    name: str
    ok: Optional[bool]
    detail: str

    def as_dict(self) -> dict:
        return {"host": self.host, "check": self.name, "ok": self.ok, "detail": self.detail}


class Problem(OneIscsiError):
    """What a check found wrong, and what to do about it."""


class NotChecked(Exception):
    """A check that cannot be made with this configuration, and why."""


@dataclass(frozen=True)
class Probe:
    """A check to make: run returns what it found, or raises Problem.
    needs: the checks that must have passed first (those not made on this
    host do not count)."""
    name: str
    run: Callable[[Session], str]
    needs: tuple[str, ...] = ("ssh",)


def examine(server: Runner, hosts: Sequence[Runner] = ()) -> list[Check]:
    """The checks of the target server, then of each hypervisor host."""
    results = run_probes(server, server_probes(server))
    for host in hosts:
        results += run_probes(host, host_probes(host, portal_host=server.host))
    return results


def run_probes(runner: Runner, probes: Sequence[Probe]) -> list[Check]:
    """Make the probes on runner's host, in order, in one session."""
    results: list[Check] = []
    passed: dict[str, Optional[bool]] = {}
    with runner.session() as session:
        for probe in probes:
            failed = next((name for name in probe.needs if name in passed and not passed[name]), None)
            if failed:
                check = Check(runner.host, probe.name, None, f"not checked: {failed} did not pass")
            else:
                check = _make(runner.host, probe, session)
            passed[probe.name] = check.ok
            results.append(check)
    return results


def _make(host: str, probe: Probe, session: Session) -> Check:
    try:
        return Check(host, probe.name, True, probe.run(session))
    except NotChecked as why:
        return Check(host, probe.name, None, str(why))
    except OneIscsiError as err:
        return Check(host, probe.name, False, " ".join(str(err).split()))


def server_probes(server: Runner, tgt_conf: str = TGT_CONF) -> list[Probe]:
    cfg = server.cfg
    used = {*TOOLS, *BACKEND_TOOLS[cfg.backend]} - ({"tgtadm"} if cfg.target == "lio" else set())
    sudo = sudo_probes(server, [program for program in PROGRAMS if program in used])
    storage = (Probe("volume group", check_volume_group, _after_sudo("vgs")) if cfg.backend == "lvm"
               else Probe("pool dir", check_pool_dir))
    if cfg.target == "lio":  # the program's run checks sudo's rule for python3 -, rtslib and configfs for real
        return [Probe("ssh", check_ssh, needs=()), *sudo, Probe("LIO", check_lio), storage,
                Probe("lock dir", check_lock_dir)]
    return [Probe("ssh", check_ssh, needs=()), *sudo,
            Probe("tgtd", check_tgtd, _after_sudo("tgtadm")),
            Probe("portal", check_portal, (*_after_sudo("tgtadm"), "tgtd")),
            storage,
            Probe("conf dir", check_conf_dir),
            Probe("tgt config", lambda session: check_tgt_config(session, tgt_conf)),
            Probe("tgt start TIDs", lambda session: check_start_tids(session, tgt_conf), ("ssh", "tgt config")),
            Probe("lock dir", check_lock_dir)]


def host_probes(host: Runner, portal_host: str) -> list[Probe]:
    return [Probe("ssh", check_ssh, needs=()), *sudo_probes(host, ["iscsiadm"]),
            Probe("open-iscsi", check_open_iscsi, _after_sudo("iscsiadm")),
            Probe("initiator name", check_initiator_name),
            Probe("portal reachable", lambda session: check_reaches(session, portal_host))]


def _after_sudo(program: str) -> tuple[str, ...]:
    """needs of a check that runs program with sudo."""
    return ("ssh", f"sudo {program}")


def check_ssh(session: Session) -> str:
    try:
        session.run(command("true", query=True))
    except CommandError as err:
        if session.runner.local:
            raise
        raise Problem(f"{err}; `ssh {session.host} true` must work as this user without a password "
                      "or a question (BatchMode)") from None
    return "this machine: no ssh" if session.runner.local else "ssh in BatchMode works"


def sudo_prefix(runner: Runner) -> list[str]:
    """The SUDO prefix as runner puts it before privileged commands: none
    when it runs as root on this machine, or when SUDO is empty."""
    return runner.resolve(command("true", privileged=True))[:-1]


def sudo_probes(runner: Runner, programs: Sequence[str]) -> list[Probe]:
    """A check of sudo's rules for each program; one line when sudo is not used."""
    prefix = sudo_prefix(runner)
    if not prefix:
        why = "root on this machine" if runner.local else "SUDO is empty"
        return [Probe("sudo", lambda session: f"not used: {why}")]
    if posixpath.basename(prefix[0]) != "sudo":
        return [Probe("sudo", _not_checked(f"SUDO is {shlex.join(prefix)}: only sudo's rules can be checked"))]
    return [Probe(f"sudo {program}", lambda session, program=program: check_sudo(session, prefix, program))
            for program in programs]


def _not_checked(why: str) -> Callable[[Session], str]:
    def run(session: Session) -> str:
        raise NotChecked(why)
    return run


def check_sudo(session: Session, prefix: Sequence[str], program: str) -> str:
    """Whether sudo's rules let the ssh user run program, as configured
    (`tgtadm -C 7`): `sudo -n -l ARGV`. It runs nothing, matches the rules
    exactly as the real call is matched (the program found in sudo's
    secure_path, the configured arguments), and costs one short process;
    `sudo -n true` would test a command the rules need not allow. What -l
    cannot see (measured, sudo 1.9): a rule for ARGV that asks for a
    password while another rule of the user does not. The checks that run
    a tool through sudo for real (tgtd, volume group, open-iscsi) catch that
    for tgtadm, vgs and iscsiadm; running every tool would need an argument
    that each one takes and each rule allows, and there is none."""
    argv = session.runner.resolve(command(program))
    try:
        allowed = session.run(command(prefix[0], "-n", "-l", *prefix[1:], *argv, query=True))
    except CommandError as err:
        raise _sudo_problem(err, session.host, program, shlex.join(argv)) from None
    return f"allows {allowed.strip() or shlex.join(argv)}"


def _sudo_problem(err: CommandError, host: str, program: str, argv: str) -> OneIscsiError:
    if "a password is required" in err.stderr:
        return Problem(f"sudo asks for a password: add a NOPASSWD sudoers rule for {program} (see README)")
    if "command not found" in err.stderr:
        return Problem(f"{program} is not installed on {host} (not in sudo's secure_path): "
                       f"install {PACKAGES.get(program, 'it')}, or set {KEY_OF[program]}")
    if err.rc == 127:
        return Problem(f"{err}: install sudo, or set SUDO")
    if err.rc == 1 and not err.stderr.strip():
        return Problem(f"sudo does not allow `{argv}`: add a NOPASSWD sudoers rule for it (see README)")
    return err


def check_tgtd(session: Session) -> str:
    shown = session.run(tgt.show_system())  # tgt's own hint says what to do when tgtd does not answer
    state = next((line.split(":", 1)[1].strip() for line in shown.splitlines() if line.strip().startswith("State:")),
                 "")
    return f"running, {state}" if state else "running"


def check_lio(session: Session) -> str:
    """LIO's configfs is there, and lioprogram.py runs with sudo and rtslib."""
    try:
        session.run(command("test", "-d", lio.CONFIGFS, query=True))
    except CommandError:
        raise Problem(f"no {lio.CONFIGFS} on {session.host}: load LIO's modules (target_core_mod, "
                      "iscsi_target_mod) and mount configfs") from None
    try:
        targets = ask(session, lio.list_targets())["targets"]
    except CommandError as err:
        if "a password is required" in err.stderr or (err.rc == 1 and not err.stderr.strip()):
            raise Problem("sudo does not allow `python3 -`: add the NOPASSWD sudoers rule of the README's "
                          "LIO target servers") from None
        raise
    return f"python3-rtslib-fb answers: {len(targets)} iSCSI target{'s' if len(targets) != 1 else ''}"


def check_portal(session: Session) -> str:
    port = session.cfg.portal_port
    portals = tgt.parse_portals(session.run(tgt.show_portals()))
    listening = [f"{address}:{number}" for address, number in portals if number == port]
    if not listening:
        found = ", ".join(f"{address}:{number}" for address, number in portals) or "no portal"
        raise Problem(f"tgtd listens on {found}, not on port {port} (PORTAL_PORT): set PORTAL_PORT to its "
                      f"port, or start tgtd with --iscsi portal=ADDRESS:{port}")
    return f"listening on {', '.join(listening)}"


def check_volume_group(session: Session) -> str:
    vg = session.cfg.vg_name
    total, free = lvm.parse_vg_usage(session.run(lvm.vg_usage(vg)))  # lvm's own hint for a missing group
    return f"{vg}: {total} MiB, {free} MiB free"


def check_pool_dir(session: Session) -> str:
    directory = session.cfg.pool_dir
    kind = _type_of(session, directory)
    if kind is None:
        raise Problem(f"{directory} does not exist on {session.host}: create it (mkdir -p {directory}), "
                      "or set POOL_DIR")
    if kind != "directory":
        raise Problem(f"{directory} on {session.host} is a {kind}, not a directory: set POOL_DIR")
    if sudo_prefix(session.runner):
        # the images are written through sudo, as root, whom only a read-only mount stops
        options = session.run(command("findmnt", "-n", "-o", "OPTIONS", "-T", directory, query=True))
        if "ro" in options.strip().split(","):
            raise Problem(f"{directory} is on a read-only filesystem on {session.host}: mount it read-write, "
                          "or set POOL_DIR")
    elif not _holds(session, "-w", directory):
        raise Problem(f"{directory} on {session.host} is not writable by the user one-iscsi runs as "
                      "(SUDO is not used): make it writable, or set POOL_DIR")
    return f"{directory} exists and is writable"


def check_conf_dir(session: Session) -> str:
    directory = session.cfg.conf_dir
    kind = _type_of(session, directory)
    if kind == "directory":
        return f"{directory} exists"
    if kind is not None:
        raise Problem(f"{directory} on {session.host} is a {kind}, not a directory: move it away, or set CONF_DIR")
    # a fresh target server: saving the first target makes it (tgtconf.write)
    return f"{directory} not made yet: the first target one-iscsi makes creates it"


def check_tgt_config(session: Session, tgt_conf: str = TGT_CONF) -> str:
    """tgt's start-up reads the include file one-iscsi writes, and that file
    includes CONF_DIR as one-iscsi writes it (tgtconf.include)."""
    conf_dir = session.cfg.conf_dir
    include_file = tgtconf.include_path(conf_dir)
    main = _read(session, tgt_conf)
    if main is None:
        raise Problem(f"no {tgt_conf} on {session.host}: install tgt")
    if not includes(main, include_file):
        raise Problem(f"tgt's start does not read {include_file}: add `include {include_file}` to {tgt_conf}, "
                      "or set CONF_DIR to a directory in one it includes")
    written = _read(session, include_file)
    if written is None:
        if _type_of(session, conf_dir) is not None:
            raise Problem(f"{include_file} is missing: tgt's start does not bring back the targets saved in "
                          f"{conf_dir}; the next target one-iscsi makes writes it again")
        return f"{tgt_conf} includes {include_file}, which the first target one-iscsi makes writes"
    wanted = set(tgtconf.include(conf_dir).splitlines())
    if not wanted <= {line.strip() for line in written.splitlines()}:
        raise Problem(f"{include_file} is not the one one-iscsi writes ({' / '.join(sorted(wanted))}; an "
                      "older version's lacks ignore-errors): delete it; the next target one-iscsi makes writes it")
    return f"{tgt_conf} includes {include_file}, which includes {conf_dir.rstrip('/')}/*.conf"


def check_start_tids(session: Session, tgt_conf: str = TGT_CONF) -> str:
    """tgt's start-up gives no target a TID another one records (tgtstart)."""
    files, unread, missing = _tgt_config(session, tgt_conf)
    found = [target for path, text in files for target in tgtstart.declared(text, path)]
    problems = [f"{path} includes {pattern}, which does not exist: tgt-admin stops there and tgt's start makes "
                "no target" for path, pattern in missing]
    problems += tgtstart.problems(found, session.cfg.conf_dir, session.cfg.base_tid)
    if problems:
        raise Problem("; ".join(problems))
    if unread:
        raise NotChecked(f"not checked: what tgt's start reads is out of reach of the user one-iscsi runs as: "
                         f"{', '.join(unread)}")
    if not found:
        return "tgt's configuration has no target"
    count = f"{len(found)} target{'' if len(found) == 1 else 's'}"
    if all(target.tid is not None for target in found):
        return f"every target of tgt's configuration records a TID of its own ({count})"
    return f"no target of tgt's configuration records a TID: tgt's start numbers them in name order ({count})"


def _tgt_config(session: Session, tgt_conf: str) -> tuple[list[tuple[str, str]], list[str], list[tuple[str, str]]]:
    """(path, text) of tgt_conf and of every file it includes, as tgt-admin
    reads them; what could not be read, and why; (file, include) of the
    includes that name nothing. CONF_DIR's files are read as one-iscsi reads
    them (through sudo)."""
    texts, unread, missing, pending = {}, [], [], [tgt_conf]
    conf_dir = session.cfg.conf_dir.rstrip("/")
    while pending:
        path = pending.pop(0)
        try:
            text = _read(session, path)
        except NotChecked:
            unread.append(f"{path} (Permission denied)")
            continue
        texts[path] = text or ""
        for pattern, optional in tgtstart.includes(texts[path]):
            pattern = posixpath.join("/", pattern)  # tgt-admin runs from /
            if conf_dir in (pattern.rstrip("/"), posixpath.dirname(pattern)):  # CONF_DIR is 0700: sudo reads it
                texts.update((file, text) for _iqn, file, text in TargetServer(session).read_saved() if text)
                continue
            if not tgtstart.followed(pattern):
                unread.append(f"{pattern} (a glob doctor does not follow)")
                continue
            try:
                listed = session.run(tgtstart.find_included(pattern))
            except CommandError as err:
                if "Permission denied" in err.stderr:
                    unread.append(f"{pattern} (Permission denied)")
                elif "No such file" not in err.stderr:
                    raise
                elif not (optional or tgtstart.is_glob(pattern)):
                    missing.append((path, pattern))
                continue
            pending += [file for file in tgtstart.included(listed, pattern)
                        if file not in texts and file not in pending]
    return list(texts.items()), unread, missing


def includes(config: str, path: str) -> bool:
    """Whether an `include` line of a tgt config names path: the path, a
    glob matching it, or its directory (tgt-admin reads includes with
    Config::General: globs and directories). One level: what tgt ships."""
    for pattern, _optional in tgtstart.includes(config):
        pattern = pattern.rstrip("/")
        if pattern == posixpath.dirname(path) or (
                pattern.count("/") == path.count("/") and fnmatch.fnmatchcase(path, pattern)):
            return True
    return False


def check_lock_dir(session: Session) -> str:
    """The lock files are opened by the login shell (run.py), as the ssh
    user, not through sudo: `test -w` as that user is exact."""
    lock = session.cfg.lock_file
    directory = posixpath.dirname(lock)
    user = "this user" if session.runner.local else "the ssh user"
    try:
        kind = _type_of(session, directory)
    except NotChecked:
        raise Problem(f"{directory} on {session.host} is out of reach of {user} (Permission denied): "
                      "make it reachable, or set LOCK_FILE") from None
    if kind != "directory":
        found = "does not exist" if kind is None else f"is a {kind}, not a directory"
        raise Problem(f"{directory} {found} on {session.host}: create it, or set LOCK_FILE")
    if not _holds(session, "-w", directory):
        raise Problem(f"{directory} on {session.host} is not writable by {user} (LOCK_FILE and the images' locks "
                      "go there): make it writable (as /run/lock, mode 1777), or set LOCK_FILE")
    if _type_of(session, lock) is not None and not _holds(session, "-w", lock):
        raise Problem(f"{lock} on {session.host} is not writable by {user}: remove it, or set LOCK_FILE")
    return f"{directory} is writable"


def check_open_iscsi(session: Session) -> str:
    try:
        return session.run(command("iscsiadm", "--version", privileged=True, query=True)).strip()
    except CommandError as err:
        if err.rc != 127:
            raise
        raise Problem(f"iscsiadm is not installed on {session.host}: install open-iscsi, or set ISCSIADM") from None


def check_initiator_name(session: Session) -> str:
    """The name the host's initiator logs in with (INITIATORS may list it).
    Read as the ssh user: the sudo rules of a host cover iscsiadm only, and
    some distributions keep the file readable by root alone."""
    try:
        text = _read(session, INITIATOR_NAME_FILE)
    except NotChecked:
        if not _holds(session, "-s", INITIATOR_NAME_FILE):
            raise Problem(f"{INITIATOR_NAME_FILE} on {session.host} is empty: reinstall open-iscsi") from None
        return f"{INITIATOR_NAME_FILE} is there (readable by root only: name not read)"
    if text is None:
        raise Problem(f"no {INITIATOR_NAME_FILE} on {session.host}: install open-iscsi")
    settings = dict(line.strip().partition("=")[::2] for line in text.splitlines()
                    if "=" in line and not line.lstrip().startswith("#"))
    if settings.get("InitiatorName"):
        return settings["InitiatorName"]
    if settings.get("GenerateName") == "yes":
        return "made when iscsid first starts (GenerateName=yes)"
    raise Problem(f"{INITIATOR_NAME_FILE} on {session.host} has no InitiatorName: add "
                  "`InitiatorName=<IQN>` (iscsi-iname makes one), then restart iscsid")


def check_reaches(session: Session, portal_host: str) -> str:
    """A TCP connection from the host to the portal the IQNs name: HOST on
    PORTAL_PORT, with the host's own name resolution and routes."""
    port = session.cfg.portal_port
    where = f"{portal_host}:{port}"
    connect = command("timeout", str(CONNECT_SECONDS), "bash", "-c", CONNECT, "portal-check", portal_host, str(port),
                      query=True)
    try:
        session.run(connect, timeout=session.cfg.timeout + CONNECT_SECONDS)
    except CommandError as err:
        raise _connect_problem(err, session.host, portal_host, where) from None
    return f"connects to {where}"


def _connect_problem(err: CommandError, host: str, portal_host: str, where: str) -> OneIscsiError:
    if err.program != "timeout":  # the session itself failed
        return err
    if err.rc == 124:
        return Problem(f"no answer from {where} within {CONNECT_SECONDS} s: open TCP port {where.rpartition(':')[2]} "
                       f"of the target server to {host} (a firewall drops it?)")
    if "refused" in err.stderr:
        return Problem(f"{where} refuses connections: is tgtd's portal on that address and PORTAL_PORT?")
    if any(text in err.stderr for text in ("not known", "name resolution", "No address")):
        return Problem(f"{host} cannot resolve {portal_host} (HOST, the host part of every IQN): "
                       "add it to the host's DNS or /etc/hosts")
    if err.rc == 127:
        return Problem(f"no bash or timeout on {host}: install them")
    return Problem(f"cannot connect to {where}: {' '.join(err.stderr.split()) or f'exit {err.rc}'}")


def _holds(session: Session, *test: str) -> bool:
    """Whether `test ARGS` is true on the host."""
    try:
        session.run(command("test", *test, query=True))
    except CommandError as err:
        if err.program == "test" and err.rc == 1:
            return False
        raise
    return True


def _type_of(session: Session, path: str) -> Optional[str]:
    """stat's name of the type of path on the host ("directory", "regular
    file" ...); None if there is nothing. NotChecked if the user may not
    look: one-iscsi itself gets there through sudo."""
    try:
        return session.run(command("stat", "-c", "%F", "--", path, query=True)).strip()
    except CommandError as err:
        return _absent(err, path)


def _read(session: Session, path: str) -> Optional[str]:
    """The text of a file on the host; None if there is none; NotChecked if
    the user may not read it."""
    try:
        return session.run(command("cat", "--", path, query=True))
    except CommandError as err:
        return _absent(err, path)


def _absent(err: CommandError, path: str) -> None:
    if "No such file" in err.stderr:
        return None
    if "Permission denied" in err.stderr:
        raise NotChecked(f"{path} is out of reach of the user one-iscsi runs as (Permission denied): "
                         "not checked") from None
    raise err
