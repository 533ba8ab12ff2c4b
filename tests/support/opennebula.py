"""OpenNebula around the driver, written from its driver protocol (no
OpenNebula code): what oned's driver processes do with the remotes, and a
test cloud of hosts for them to work on.

DatastoreDriver  one_datastore.rb and the image manager: calls
                 remotes/datastore/iscsi/<action> as 3.4 (XML as argument) or
                 6.8+ (XML on stdin) does, and reads the reply as that oned does
TransferDriver   one_tm.rb: runs a transfer file line by line, the iscsi lines
                 through remotes/tm/iscsi, the system datastore's lines (shared
                 or ssh) through an emulation of those TMs; and 7.x live migration
Cloud            the hosts node1, node2 and front-end and the target server
                 tgtserver, all aliases of the one loopback sshd: the ssh
                 wrapper (SSH) that gives each host its own view of the system
                 datastore when the system TM is ssh, the iscsiadm stand-in
                 (tests/data/fake-iscsiadm) and its state, the environment
                 of the driver

The iscsiadm of the hosts is tests/data/fake-iscsiadm behind a wrapper that
first exports every LUN 1 of tgtd to it (STATE/luns/<IQN> holding the backing
file), and only those: as a kernel sees the targets that exist when it logs
in, also those a transfer action itself creates (7.x CLONE).

Per-host views: the VM directories are <root>/datastores/<ds>/<vmid> on every
host. With the ssh system TM each host must see its own: the wrapper runs
every remote command in a mount namespace of its own (unshare -m) where
<root>/hosts/<alias> is bind-mounted onto <root>/datastores. With the shared
system TM the command runs as it is and all hosts see <root>/datastores. The
emulated system TMs use the same wrapper, so they see what the driver sees.
"""
from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence
from xml.sax.saxutils import escape

from .driver import read_lun
from .paths import BIN, DATA, REMOTES

ERROR_START = "ERROR MESSAGE --8<------"
ERROR_END = "ERROR MESSAGE ------>8--"
STDIN_FROM = (6, 8)        # from 6.8 on the action XML comes on stdin
HOSTS = ("node1", "node2", "front-end")
FRONT_END = "front-end"    # in NO_ISCSI, as a front-end normally is
TARGET_SERVER = "tgtserver"
SYSTEM_TMS = ("shared", "ssh")
TIMEOUT = 120
_DISK = re.compile(r"disk\.[0-9]+")  # tm_common.sh's is_disk


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@dataclass
class Reply:
    """What oned gets back: SUCCESS or FAILURE and the info, and what it
    makes of the info (set when the action succeeded)."""
    ok: bool
    info: str
    stdout: str
    stderr: str
    source: Optional[str] = None    # cp, mkfs, clone
    format: Optional[str] = None    # cp (6.0 on), clone
    size_mb: Optional[int] = None   # cp and mkfs of 3.x, stat
    usage: dict = field(default_factory=dict)  # monitor: USED_MB, TOTAL_MB, FREE_MB
    line: str = ""                  # transfer: the line that failed


def failure_info(stderr: str) -> str:
    """The info of a failed action: the ERROR MESSAGE block, else the
    stderr lines that are no ERROR:, INFO: or DEBUG: log lines; `-` if empty."""
    lines = stderr.splitlines()
    if ERROR_START in lines:
        start = lines.index(ERROR_START)
        end = lines.index(ERROR_END, start) if ERROR_END in lines[start:] else len(lines)
        text = " ".join(lines[start + 1:end])
    else:
        text = " ".join(line for line in lines if not line.startswith(("ERROR:", "INFO:", "DEBUG:")))
    return text.strip() or "-"


def _script_env() -> dict[str, str]:
    """oned's environment for the remotes: one-iscsi of the venv on PATH."""
    return {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}


def _run_script(path: Path, args: Sequence[str], stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    """A remote as a driver process runs it; a missing one fails cleanly, as
    the 7.x drivers answer an action a driver does not ship."""
    if not path.exists():
        return subprocess.CompletedProcess([str(path), *args], 127, "",
                                           f"{path.parent.name}/{path.name}: no such action script\n")
    return subprocess.run([str(path), *args], input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT, env=_script_env())


# --- datastore actions ------------------------------------------------------------------------------

def _leaves(values: Mapping[str, object]) -> str:
    return "".join(f"<{key}>{escape(str(value))}</{key}>" for key, value in values.items())


def action_data(image: Optional[Mapping[str, object]], image_template: Mapping[str, object],
                datastore: Mapping[str, object], ds_id: int) -> str:
    """DS_DRIVER_ACTION_DATA; image None: DATASTORE only (7.x monitor)."""
    image_xml = "" if image is None else (
        f"<IMAGE>{_leaves(image)}<TEMPLATE>{_leaves(image_template)}</TEMPLATE></IMAGE>")
    return (f"<DS_DRIVER_ACTION_DATA>{image_xml}<DATASTORE><ID>{ds_id}</ID><NAME>iscsi</NAME>"
            f"<DS_MAD>iscsi</DS_MAD><TM_MAD>iscsi</TM_MAD><TEMPLATE>{_leaves(datastore)}</TEMPLATE>"
            "</DATASTORE></DS_DRIVER_ACTION_DATA>")


class DatastoreDriver:
    """oned's datastore driver process and image manager, as OpenNebula
    `version` ("3.4", "6.10", "7.0", ...) calls the datastore remotes and
    parses their replies. A reply that oned would not take (more than one
    line, a 6.x/7.x cp without FORMAT, a stat that is no number) fails the
    test with an AssertionError."""

    def __init__(self, version: str, ds_id: int = 100):
        self.version = version
        self.v = version_tuple(version)
        self.ds_id = ds_id

    @property
    def on_stdin(self) -> bool:
        return self.v >= STDIN_FROM

    def call(self, action: str, image: Optional[Mapping[str, object]] = None,
             image_template: Optional[Mapping[str, object]] = None,
             datastore: Optional[Mapping[str, object]] = None, object_id: int = 0) -> Reply:
        if action == "monitor" and self.on_stdin:
            image = None  # 7.x sends the datastore alone
        elif image is None:
            image = {}
        xml = action_data(image, image_template or {}, datastore or {}, self.ds_id)
        data = base64.b64encode(xml.encode()).decode()
        script = REMOTES / "datastore" / "iscsi" / action
        if self.on_stdin:
            done = _run_script(script, [str(object_id)], stdin=data)  # no newline after it
        else:
            done = _run_script(script, [data, str(object_id)])
        if done.returncode != 0:
            return Reply(False, failure_info(done.stderr), done.stdout, done.stderr)
        if action != "monitor":
            assert len(done.stdout.splitlines()) <= 1, (
                f"{action} printed more than one line on stdout, which breaks the driver protocol: {done.stdout!r}")
        reply = Reply(True, done.stdout.strip() or "-", done.stdout, done.stderr)
        self._parse(action, reply)
        return reply

    def _parse(self, action: str, reply: Reply) -> None:
        """What oned reads from a successful reply."""
        info = reply.stdout.strip()
        words = info.split()
        if action in ("cp", "mkfs") and self.v < (4,):
            assert words, f"{action} replied nothing: 3.4 needs SOURCE SIZE_MB"
            reply.source = words[0]
            reply.size_mb = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
        elif action == "cp":
            assert words, "cp replied no SOURCE: the image goes to ERROR"
            reply.source = words[0] if self.v >= (6,) else info
            if self.v >= (6,):
                assert len(words) > 1, (
                    f"cp replied {info!r} without FORMAT: OpenNebula {self.version} puts the image in ERROR "
                    "(CP operation succeeded but image FORMAT was not returned)")
                reply.format = words[1]
        elif action == "mkfs":
            reply.source = info  # the whole reply is the SOURCE
        elif action == "clone":
            assert words, "clone replied no SOURCE: the image goes to ERROR"
            reply.source = words[0]
            reply.format = words[1] if len(words) > 1 else None
        elif action == "stat":
            assert info.isdigit(), f"stat replied {info!r}, not a size in MB"
            reply.size_mb = int(info)
        elif action == "monitor":
            for line in info.splitlines():
                key, sep, value = line.partition("=")
                assert sep and value.strip().isdigit(), f"monitor line {line!r} is not KEY=<MB>"
                reply.usage[key.strip()] = int(value)
            assert {"USED_MB", "TOTAL_MB", "FREE_MB"} <= set(reply.usage), f"monitor replied {info!r}"


# --- the test cloud ---------------------------------------------------------------------------------

# The SSH of the cloud (ONE_ISCSI_SSH), called as one-iscsi calls ssh
# ([OPTIONS] -- HOST COMMAND...): the real ssh of the loopback sshd. With per-host
# views it runs the remote command in a mount namespace of its own with the
# host's view bind-mounted onto the datastores; stdin and stdout pass through.
SSH_WRAPPER = '''#!{python} -S
import os, shlex, sys
SSH = {ssh!r}
VIEWS = {views!r}
DATASTORES = {datastores!r}
ENTER = 'mount --bind "$1" "$2" && exec "${{SHELL:-sh}}" -c "$3"'
args = sys.argv[1:]
if VIEWS and "--" in args[:-1]:
    cut = args.index("--")
    options, host, command = args[:cut], args[cut + 1], " ".join(args[cut + 2:])
    if command:
        view = os.path.join(VIEWS, host)
        os.makedirs(view, exist_ok=True)
        command = shlex.join(["exec", "unshare", "-m", "--propagation", "private", "sh", "-c", ENTER,
                              "enter-view", view, DATASTORES, command])
    args = [*options, "--", host, *([command] if command else [])]
os.execvp(SSH[0], [*SSH, *args])
'''


# ISCSIADM of the cloud's hosts: fake-iscsiadm STATE ..., once tgtd's LUNs are exported to it.
ISCSIADM_WRAPPER = '''#!{python} -S
import os, sys
sys.path.insert(0, {tests!r})
from support.opennebula import export_luns
export_luns({tgtadm!r}, {luns!r})
os.execv({fake!r}, [{fake!r}, *sys.argv[1:]])
'''


def parse_targets(shown: str) -> dict[str, Optional[str]]:
    """IQN -> backing store of LUN 1 (None without one), from `tgtadm --op show --mode target`."""
    targets: dict[str, Optional[str]] = {}
    iqn, lun = None, None
    for line in shown.splitlines():
        words = line.split()
        if line.startswith("Target "):
            iqn, lun = words[2], None
            targets[iqn] = None
        elif words[:1] == ["LUN:"]:
            lun = words[1]
        elif line.strip().startswith("Backing store path:") and lun == "1":
            targets[iqn] = line.split(":", 1)[1].strip()
    return targets


def export_luns(tgtadm: Sequence[str], luns: str) -> None:
    """luns/<IQN> = the backing file of LUN 1, for every target of tgtd with one; no other file."""
    shown = subprocess.run([*tgtadm, "--lld", "iscsi", "--op", "show", "--mode", "target"], capture_output=True,
                           text=True, timeout=TIMEOUT, check=True).stdout
    targets = {iqn: store for iqn, store in parse_targets(shown).items() if store}
    exported = {name for name in os.listdir(luns) if not name.startswith(".")}  # .*: another one's writes
    for stale in exported - set(targets):
        try:
            os.unlink(os.path.join(luns, stale))
        except FileNotFoundError:
            pass  # another host's iscsiadm, just now
    for iqn, store in targets.items():
        path = os.path.join(luns, iqn)
        try:
            with open(path) as lun:
                if lun.read() == store:
                    continue
        except FileNotFoundError:
            pass
        temporary = os.path.join(luns, f".{iqn}.{os.getpid()}")
        with open(temporary, "w") as lun:
            lun.write(store)
        os.replace(temporary, path)  # fake-iscsiadm never reads half a name


class Cloud:
    """The hosts of one test: node1 and node2 (hypervisors that log in over
    iSCSI), front-end (in NO_ISCSI) and tgtserver (the target server, the
    session's tgtd), all reached through the loopback sshd. Everything lives
    under root. env() is the driver's environment; the drivers are ds and tm."""

    def __init__(self, root: Path, sshd, tgtd, version: str, system_tm: str = "shared"):
        assert system_tm in SYSTEM_TMS, system_tm
        self.root, self.tgtd, self.version, self.system_tm = root, tgtd, version, system_tm
        self.datastores = root / "datastores"   # where OpenNebula puts the VM directories
        self.views = root / "hosts"             # per-host views: <alias>/<ds>/<vmid>
        self.state = root / "initiator"         # fake-iscsiadm's sessions, node records, LUNs
        self.pool = root / "pool"               # the file backend's images
        self.ssh = root / "ssh"
        for folder in (self.datastores, self.views, self.state / "luns", self.pool):
            folder.mkdir(parents=True, exist_ok=True)
        self.ssh.write_text(SSH_WRAPPER.format(
            python=sys.executable, ssh=shlex.split(sshd.ssh), datastores=str(self.datastores),
            views=str(self.views) if system_tm == "ssh" else ""))
        self.ssh.chmod(0o755)
        self.iscsiadm = root / "iscsiadm"
        self.iscsiadm.write_text(ISCSIADM_WRAPPER.format(
            python=sys.executable, tests=str(Path(__file__).resolve().parents[1]), tgtadm=self._tgtadm,
            luns=str(self.state / "luns"), fake=str(DATA / "fake-iscsiadm")))
        self.iscsiadm.chmod(0o755)
        self.ds = DatastoreDriver(version)
        self.tm = TransferDriver(version, system_tm, self)
        self._reads = 0

    def env(self, **more: str) -> dict[str, str]:
        """ONE_ISCSI_* of the driver: iscsiadm is the stand-in (the kernel here
        has no iSCSI initiator), no sudo (it would drop ONE_ISCSI_TEST_HOST),
        the file backend. more: further keys (NON_PERSISTENT="yes")."""
        values = {"SSH": str(self.ssh), "ISCSIADM": f"{self.iscsiadm} {self.state}", "SUDO": "",
                  "DEVICE_DIR": str(self.state / "by-path"), "NO_ISCSI": FRONT_END, "BACKEND": "file",
                  "POOL_DIR": str(self.pool), "OPENNEBULA_VERSION": self.version, **more}
        return {f"ONE_ISCSI_{key}": value for key, value in values.items()}

    # where things are

    def vm_dir(self, vmid: int, ds_id: int = 0) -> str:
        """The VM directory as OpenNebula names it, the same on every host."""
        return str(self.datastores / str(ds_id) / str(vmid))

    def seen_from(self, host: str, path: str) -> Path:
        """What path is on host: its own view with the ssh system TM."""
        if self.system_tm == "shared":
            return Path(path)
        return self.views / host / Path(path).relative_to(self.datastores)

    def read(self, host: str, path: str) -> bytes:
        """The bytes of a VM disk as host reads them (its link resolves to the
        backing file in this cloud)."""
        return self.seen_from(host, path).read_bytes()

    def write(self, host: str, path: str, data: bytes) -> None:
        """Write data at the start of a VM disk on host, flushed."""
        with open(self.seen_from(host, path), "r+b") as disk:
            disk.write(data)
            disk.flush()
            os.fsync(disk.fileno())

    def pool_file(self, lv: str, vg: str = "vg-one") -> Path:
        return self.pool / vg / lv

    # running things on the hosts

    def on(self, host: str, command: str, **options) -> subprocess.CompletedProcess:
        """Run a shell command on host, through the cloud's ssh, as a system TM does."""
        return subprocess.run([str(self.ssh), "--", host, command], capture_output=True, text=True,
                              timeout=TIMEOUT, **options)

    # the initiators (fake-iscsiadm's state)

    def sessions(self, host: str) -> list[str]:
        folder = self.state / host / "sessions"
        return sorted(os.listdir(folder)) if folder.exists() else []

    def nodes(self, host: str) -> list[str]:
        folder = self.state / host / "nodes"
        return sorted(os.listdir(folder)) if folder.exists() else []

    def logged_in(self) -> dict[str, list[str]]:
        """The sessions of every host that has any."""
        return {host: self.sessions(host) for host in HOSTS if self.sessions(host)}

    def node_records(self) -> dict[str, list[str]]:
        """The node records of every host that has any."""
        return {host: self.nodes(host) for host in HOSTS if self.nodes(host)}

    def calls(self) -> list[str]:
        """Every iscsiadm call on any host, its arguments as one line."""
        calls = self.state / "calls"
        return calls.read_text().splitlines() if calls.exists() else []

    # the target server

    @property
    def _tgtadm(self) -> list[str]:
        return ["tgtadm", "-C", str(self.tgtd.control)]

    def targets(self) -> dict[str, Optional[str]]:
        """IQN -> backing store of LUN 1 (None without one), as tgtd shows them."""
        shown = self.tgtd.tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target")
        assert shown.returncode == 0, shown.stderr
        return parse_targets(shown.stdout)

    def lun(self, iqn: str) -> bytes:
        """LUN 1 of iqn, read over iSCSI from tgtd (libiscsi)."""
        self._reads += 1
        out = self.root / f"lun-read-{self._reads}.raw"
        try:
            return read_lun(self.tgtd, iqn, out)
        finally:
            out.unlink(missing_ok=True)

    def capacity(self, iqn: str) -> int:
        """LUN 1's size in bytes as tgtd reports it (READ CAPACITY 16)."""
        done = subprocess.run(["iscsi-readcapacity16", self.tgtd.url(iqn)], capture_output=True, text=True,
                              timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr
        values = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
        return (int(values["RETURNED LOGICAL BLOCK ADDRESS"]) + 1) * int(values["LOGICAL BLOCK LENGTH IN BYTES"])


# --- transfer actions -------------------------------------------------------------------------------

def vm_xml(vmid: int, disks: Sequence[Mapping[str, object]]) -> str:
    """The VM as the VMM driver gives it to the migrate actions: <VM><ID>,
    TEMPLATE/DISK elements."""
    return (f"<VM><ID>{vmid}</ID><TEMPLATE>"
            + "".join(f"<DISK>{_leaves(disk)}</DISK>" for disk in disks)
            + "</TEMPLATE></VM>")


def _disk_tms(xml: str) -> list[str]:
    """The TM_MADs of the VM's disks, each once, in order (migrate_other)."""
    found = []
    for tm_mad in re.findall(r"<DISK>.*?<TM_MAD>([^<]*)</TM_MAD>.*?</DISK>", xml, re.DOTALL):
        if tm_mad not in found:
            found.append(tm_mad)
    return found


def _split(argument: str) -> tuple[str, str]:
    host, _, path = argument.partition(":")
    return host, path


class TransferDriver:
    """oned's transfer driver process, as OpenNebula `version` runs transfer
    files, with `system_tm` ("shared" or "ssh") as the system datastore's TM.
    Lines of TM_MAD iscsi run remotes/tm/iscsi/<action>; lines of the system
    TM run an emulation of it, over the cloud's ssh, so they see each host's
    view."""

    def __init__(self, version: str, system_tm: str, cloud: Cloud):
        self.version, self.v, self.system_tm, self.cloud = version, version_tuple(version), system_tm, cloud

    def run(self, lines: Sequence[str]) -> Reply:
        """A transfer file: its lines in order, stopping at the first failure."""
        out, err = [], []
        for line in lines:
            action, tm_mad, *args = line.split()
            if tm_mad == "iscsi":
                done = _run_script(REMOTES / "tm" / "iscsi" / action.lower(), args)
            elif tm_mad == self.system_tm:
                done = self._system(action, args)
            else:
                raise AssertionError(f"line {line!r}: TM_MAD {tm_mad} is neither iscsi nor the system TM "
                                     f"{self.system_tm}")
            out.append(done.stdout)
            err.append(done.stderr)
            if done.returncode != 0:
                return Reply(False, failure_info(done.stderr), "".join(out), "".join(err), line=line)
        return Reply(True, "-", "".join(out), "".join(err))

    def migrate(self, kind: str, src_host: str, dst_host: str, vm_dir: str, vmid: int, sys_dsid: int,
                xml: str) -> Reply:
        """Live migration (6.x/7.x): the system TM's pre|post|failmigrate as
        the VMM driver runs it, the VM XML base64 on stdin."""
        assert kind in ("pre", "post", "fail"), kind
        assert self.v >= (5,), "live migration actions came after 3.4"
        data = base64.b64encode(xml.encode()).decode()
        outs, errs = [], []

        def step(done: subprocess.CompletedProcess) -> bool:
            outs.append(done.stdout)
            errs.append(done.stderr)
            return done.returncode == 0

        def reply(ok: bool) -> Reply:
            stderr = "".join(errs)
            return Reply(ok, "-" if ok else failure_info(stderr), "".join(outs), stderr)

        if self.system_tm == "ssh" and kind != "fail" and src_host == dst_host:
            return reply(True)  # "they are the same host"
        if self.system_tm == "ssh" and kind == "pre" and not step(
                self.cloud.on(dst_host, f"rm -rf {shlex.quote(vm_dir)}")):
            return reply(False)
        for tm_mad in _disk_tms(xml):  # migrate_other: the disks' TMs other than this one
            if tm_mad == self.system_tm:
                continue
            assert tm_mad in ("iscsi", "qcow2"), f"no emulation of TM {tm_mad}"
            if tm_mad != "iscsi":
                continue  # another driver's disks: not ours to emulate or to touch
            args = [src_host, dst_host, vm_dir, str(vmid), str(sys_dsid), self.system_tm]
            if not step(_run_script(REMOTES / "tm" / "iscsi" / f"{kind}migrate", args, stdin=data)):
                return reply(False)
        if self.system_tm == "ssh" and kind == "post" and not step(
                self.cloud.on(src_host, f"rm -rf {shlex.quote(vm_dir)}")):
            return reply(False)
        return reply(True)

    # the system TMs

    def _system(self, action: str, args: list[str]) -> subprocess.CompletedProcess:
        if action == "MV":
            return (self._shared_mv if self.system_tm == "shared" else self._ssh_mv)(args[0], args[1])
        if action == "DELETE":
            host, path = _split(args[0])
            return self.cloud.on(host, f"rm -rf {shlex.quote(path)}")
        raise AssertionError(f"no emulation of {self.system_tm}/{action.lower()}")

    def _shared_mv(self, src: str, dst: str) -> subprocess.CompletedProcess:
        """3.4: nothing (one filesystem). 7.x: nothing when the paths are the same."""
        if self.v >= (4,):
            assert _split(src)[1] == _split(dst)[1], f"shared MV between paths {src} {dst} is not emulated"
        return subprocess.CompletedProcess(["shared/mv", src, dst], 0, "", "")

    def _ssh_mv(self, src: str, dst: str) -> subprocess.CompletedProcess:
        """ssh/mv: the VM directory copied with tar from host to host (links
        as links), then removed at the source."""
        ok = subprocess.CompletedProcess(["ssh/mv", src, dst], 0, "", "")
        (src_host, src_path), (dst_host, dst_path) = _split(src), _split(dst)
        if _DISK.search(dst_path) or src == dst:
            return ok
        parent, name = os.path.dirname(src_path), os.path.basename(src_path)
        dst_parent = os.path.dirname(dst_path)
        prepared = self.cloud.on(dst_host, f"mkdir -p {shlex.quote(dst_parent)} && rm -rf {shlex.quote(dst_path)}")
        if prepared.returncode != 0:
            return prepared
        packing = subprocess.Popen([str(self.cloud.ssh), "--", src_host,
                                    f"tar -C {shlex.quote(parent)} -cf - {shlex.quote(name)}"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        unpacking = subprocess.run([str(self.cloud.ssh), "--", dst_host, f"tar -C {shlex.quote(dst_parent)} -xf -"],
                                   stdin=packing.stdout, capture_output=True, timeout=TIMEOUT)
        packing.stdout.close()
        packed_err = packing.stderr.read()
        packing.stderr.close()
        packed = packing.wait(timeout=TIMEOUT)
        if packed != 0 or unpacking.returncode != 0:
            return subprocess.CompletedProcess(["ssh/mv", src, dst], 1, "",
                                               (packed_err + unpacking.stderr).decode(errors="replace"))
        return self.cloud.on(src_host, f"rm -rf {shlex.quote(src_path)}")
