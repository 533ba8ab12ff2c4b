"""tgt's own start-up, `tgt-admin -e`, over the files one-iscsi saves.

tgt-admin reads the whole configuration (targets.conf and what it includes)
with Config::General and runs every tgtadm through sh, as root; `-e` also
deletes every target its configuration lacks, so each test has a tgtd of its
own. What these tests measure of tgt-admin (tgt 1.0.85):

* a backing store that does not exist is skipped: the target comes back
  without a LUN, and tgt-admin still exits 0;
* a file Config::General cannot read (a <target> without </target>) stops it
  before anything is done: exit 255, no target at all comes back;
* a tgtadm that fails (a backing store tgtd refuses, a value sh cannot read)
  stops it there: the target it was making stays half-made, the targets after
  it (in IQN order) do not come back, and it exits with tgtadm's status;
* a target without initiator-address is bound to ALL;
* plain backing-store lines become LUNs 1, 2, ... in the order of their
  paths, a missing one skipped (the next takes its number); a
  <backing-store PATH> block with `lun N` keeps its number;
* files whose names start with a dot (one-iscsi's temporary files) are not
  read.

one-iscsi therefore writes only values that pass the rules of values.py,
each file whole (a temporary dot file renamed), and `one-iscsi target
restore` restores every target it can, whatever the others are.
"""
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from oneiscsi import config, doctor, tgt, tgtconf, tgtstart
from oneiscsi.config import ConfigError
from oneiscsi.errors import InvalidInput
from oneiscsi.run import Runner
from oneiscsi.targets import TargetServer
from oneiscsi.tgtconf import NO_ADDRESS, TargetSpec
from support import daemons
from support.commands import quiet
from support.driver import action_xml, random_image, read_lun, remote

IQN = "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-{}"
PASSWORD = "a~^b%c,d/e=f+g:"  # every kind of character the rules allow, through sh
NODE1, NODE2 = "iqn.2000-01.org.example:node1", "iqn.2000-01.org.example:node2"


class Tgt:
    """A tgt installation in a folder: targets.conf including conf.d/*.conf,
    one-iscsi's CONF_DIR in conf.d, a private tgtd, and one-iscsi (and its
    CLI in this process) configured for them."""

    def __init__(self, root: Path, daemon: daemons.Tgtd):
        self.daemon, self.pool = daemon, root / "pool"
        conf_d = root / "etc" / "tgt" / "conf.d"
        conf_d.mkdir(parents=True)
        self.conf_dir = conf_d / "one-iscsi"
        self.targets_conf = root / "etc" / "tgt" / "targets.conf"
        self.targets_conf.write_text(f"include {conf_d}/*.conf\n")
        self.env = {**daemon.env, "ONE_ISCSI_CONF_DIR": str(self.conf_dir), "ONE_ISCSI_HOST": "localhost",
                    "ONE_ISCSI_LOCK_FILE": str(root / "one-iscsi.lock")}
        self.cfg = config.load(env=self.env)

    def store(self, n: int, data: bytes = b"") -> str:
        """The file backend's backing store of image n, made (8 MiB) with data at its start."""
        path = self.pool / "vg-one" / f"lv-one-{n}"
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["truncate", "-s", "8M", str(path)], check=True)
        with open(path, "r+b") as device:
            device.write(data)
        return str(path)

    def save(self, *specs: TargetSpec) -> None:
        """What one-iscsi does when it has made a target."""
        with Runner("localhost", self.cfg).session() as session:
            for spec in specs:
                TargetServer(session).save(spec)

    def file(self, iqn: str) -> Path:
        return Path(tgtconf.path(str(self.conf_dir), iqn))

    def start(self, *options: str) -> subprocess.CompletedProcess:
        """tgt's start-up: tgt-admin -e over targets.conf."""
        return quiet(["tgt-admin", "-C", str(self.daemon.control), *options, "-e", "-c", str(self.targets_conf)])

    def targets(self) -> dict[str, tgt.Target]:
        shown = self.daemon.tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target").stdout
        return {target.iqn: target for target in tgt.parse_show(shown)}

    def luns(self) -> dict[str, tuple[str, ...]]:
        return {iqn: tuple(lun.backing_store for lun in target.luns) for iqn, target in self.targets().items()}

    def inquire(self, iqn: str, initiator: str = "", user: str = "", password: str = "") -> tuple[int, str]:
        url = f"iscsi://{user + '@' if user else ''}{self.daemon.portal}/{iqn}/1"
        done = quiet(["iscsi-inq", *(["-i", initiator] if initiator else []), url],
                     env={**os.environ, "LIBISCSI_CHAP_PASSWORD": password} if password else None)
        return done.returncode, done.stdout + done.stderr


@pytest.fixture
def tgt_install(tmp_path, monkeypatch):
    with daemons.tgtd() as daemon:  # stopped by PID at the end, also when the test fails
        installed = Tgt(tmp_path, daemon)
        for key, value in installed.env.items():
            monkeypatch.setenv(key, value)
        yield installed


def access_specs(installed: Tgt, data: bytes) -> list[TargetSpec]:
    """Targets with data, CHAP (every kind of character a password may hold), addresses and names: what
    assert_access checks."""
    return [
        TargetSpec(IQN.format(1), (installed.store(1, data),)),
        TargetSpec(IQN.format(2), (installed.store(2),), ("127.0.0.1", "192.168.7.0/24", "::1"), "one", PASSWORD),
        TargetSpec(IQN.format(3), (installed.store(3),), (NODE1,)),
        TargetSpec(IQN.format(4), (installed.store(4), installed.store(40)), ("10.9.9.9", NODE1)),
    ]


def test_what_one_iscsi_saves_comes_back_at_tgt_start_with_its_access_rules(tgt_install, tmp_path, cli):
    data = os.urandom(64 * 1024)
    specs = access_specs(tgt_install, data)
    tgt_install.save(*specs)
    assert sorted(os.listdir(tgt_install.conf_dir)) == sorted(f"{spec.iqn}.conf" for spec in specs)
    assert {tgt_install.file(spec.iqn).stat().st_mode & 0o777 for spec in specs} == {0o600}

    started = tgt_install.start()
    assert started.returncode == 0, started.stdout + started.stderr
    assert tgt_install.luns() == {spec.iqn: spec.backing_stores for spec in specs}
    assert tgt_install.targets()[IQN.format(3)].acl == (NO_ADDRESS, NODE1)  # not ALL
    assert_access(tgt_install, data, tmp_path)
    again = tgt_install.start()
    assert again.returncode == 0 and len(tgt_install.targets()) == 4

    tgt_install.daemon.delete_all_targets()
    restored = cli("target", "restore")
    assert (restored.rc, restored.err.splitlines()[-1]) == (0, "4 restored, 0 already present")
    assert tgt_install.luns() == {spec.iqn: spec.backing_stores for spec in specs}
    assert_access(tgt_install, data, tmp_path)


def assert_access(installed: Tgt, data: bytes, tmp_path: Path) -> None:
    assert installed.inquire(IQN.format(1))[0] == 0
    assert read_lun(installed.daemon, IQN.format(1), tmp_path / "lun.raw")[:len(data)] == data
    assert "Authentication failure" in installed.inquire(IQN.format(2))[1]
    assert "Authentication failure" in installed.inquire(IQN.format(2), user="one", password="wrong-pass-123")[1]
    assert installed.inquire(IQN.format(2), user="one", password=PASSWORD)[0] == 0
    assert installed.inquire(IQN.format(3), initiator=NODE1)[0] == 0
    assert "Target not found" in installed.inquire(IQN.format(3), initiator=NODE2)[1]
    assert installed.inquire(IQN.format(4), initiator=NODE1)[0] == 0
    assert "Target not found" in installed.inquire(IQN.format(4), initiator=NODE2)[1]


# (key, value): {canary} is an absolute path under the test's folder
HOSTILE = [
    ("INITIATORS", "127.0.0.1;touch${{IFS}}{canary}"),
    ("CHAP_PASSWORD", "pass$(touch${{IFS}}{canary})"),
    ("POOL_DIR", "/srv/p$(touch${{IFS}}{canary})"),
    ("INITIATORS", "127.0.0.1\n    incominguser evil evil-pass-123"),
    ("CHAP_PASSWORD", "secret-pass-12\n    incominguser evil evil-pass-123"),
    ("CHAP_USER", "one\n    incominguser evil"),
    ("POOL_DIR", "/srv/p\n</target>"),
    ("INITIATORS", "</target>"),
    ("CHAP_USER", "one</target>"),
    ("INITIATORS", "`touch {canary}`"),
    ("INITIATORS", "fe80::1%$(touch${{IFS}}{canary})"),  # an IPv6 zone: ipaddress takes any text there
    ("CHAP_PASSWORD", "pass`touch${{IFS}}{canary}`"),
    ("POOL_DIR", "/srv/`touch${{IFS}}{canary}`"),
    ("CHAP_USER", "one;touch${{IFS}}{canary}"),
    ("POOL_DIR", "/srv/p;touch${{IFS}}{canary}"),
    ("INITIATORS", "10.0.0.1|touch${{IFS}}{canary}"),
    ("CHAP_PASSWORD", "secret|touch${{IFS}}{canary}"),
    ("INITIATORS", "10.0.0.1&&touch${{IFS}}{canary}"),
    ("POOL_DIR", "/srv/p&&touch${{IFS}}{canary}"),
    ("INITIATORS", "$(touch${{IFS}}{canary})"),
    ("CHAP_USER", "$(touch${{IFS}}{canary})"),
    ("CHAP_PASSWORD", "secret-pass-12#x"),
    ("CHAP_PASSWORD", "secret-pass-1\\"),
]
GOOD_PASSWORD = "secret-pass-12"


def hostile_spec(key: str, value: str) -> TargetSpec:
    store = "/srv/one-iscsi/vg-one/lv-one-9"
    return {
        "INITIATORS": TargetSpec(IQN.format(9), (store,), (value,)),
        "CHAP_USER": TargetSpec(IQN.format(9), (store,), ("ALL",), value, GOOD_PASSWORD),
        "CHAP_PASSWORD": TargetSpec(IQN.format(9), (store,), ("ALL",), "one", value),
        "POOL_DIR": TargetSpec(IQN.format(9), (f"{value}/vg-one/lv-one-9",)),
    }[key]


@pytest.mark.parametrize("key, value", HOSTILE, ids=[f"{key}-{n}" for n, (key, _) in enumerate(HOSTILE)])
def test_a_hostile_value_never_reaches_a_target_file(tgt_install, tmp_path, key, value):
    canary = tmp_path / "canary"
    value = value.format(canary=canary)
    partner = {"CHAP_USER": {"CHAP_PASSWORD": GOOD_PASSWORD}, "CHAP_PASSWORD": {"CHAP_USER": "one"}}.get(key, {})
    with pytest.raises(ConfigError, match=f"^{key} "):
        config.load(template={key: value, **partner}, env={})
    with pytest.raises(InvalidInput, match=f"^target '{IQN.format(9)}': "):
        tgtconf.render(hostile_spec(key, value))

    good = TargetSpec(IQN.format(1), (tgt_install.store(1),))
    tgt_install.save(good)
    with pytest.raises(InvalidInput):
        tgt_install.save(hostile_spec(key, value))
    assert os.listdir(tgt_install.conf_dir) == [f"{good.iqn}.conf"]
    started = tgt_install.start()
    assert started.returncode == 0, started.stdout + started.stderr
    assert tgt_install.luns() == {good.iqn: good.backing_stores}
    assert not canary.exists()


@pytest.mark.parametrize("line", ["initiator-address 127.0.0.1;touch${{IFS}}{canary}",
                                  "incominguser one pass$(touch${{IFS}}{canary})"])
def test_a_hostile_value_written_verbatim_would_reach_tgt_admins_shell(tgt_install, tmp_path, line):
    """What the corpus above guards against, seen with tgt-admin --pretend,
    which prints the command lines it would hand to sh instead of running them."""
    canary = tmp_path / "canary"
    line = line.format(canary=canary)
    tgt_install.conf_dir.mkdir(mode=0o700)
    Path(tgtconf.include_path(str(tgt_install.conf_dir))).write_text(f"include {tgt_install.conf_dir}/*.conf\n")
    tgt_install.file(IQN.format(1)).write_text(
        f"<target {IQN.format(1)}>\n    backing-store {tgt_install.store(1)}\n    {line}\n</target>\n")
    pretended = tgt_install.start("--pretend")
    assert f"touch${{IFS}}{canary}" in pretended.stdout
    assert not canary.exists() and tgt_install.targets() == {}


def write_unclosed(installed: Tgt, name: str, n: int) -> None:
    """A file cut short: what an interrupted write in place would leave."""
    (installed.conf_dir / name).write_text(f"<target {IQN.format(n)}>\n    backing-store {installed.store(n)}\n")


def test_tgt_start_skips_a_missing_backing_store_and_reads_no_temporary_file(tgt_install):
    good = [TargetSpec(IQN.format(n), (tgt_install.store(n),)) for n in (1, 3, 5)]
    gone = TargetSpec(IQN.format(2), (str(tgt_install.pool / "vg-one" / "lv-one-2"),))
    tgt_install.save(good[0], gone, *good[1:])
    write_unclosed(tgt_install, f".{IQN.format(4)}.conf.tmp", 4)
    write_unclosed(tgt_install, f".{IQN.format(6)}.conf", 6)

    started = tgt_install.start()
    assert started.returncode == 0, started.stdout + started.stderr
    assert tgt_install.luns() == {**{spec.iqn: spec.backing_stores for spec in good}, gone.iqn: ()}
    assert tgt_install.targets()[gone.iqn].acl == ("ALL",)


def test_tgt_start_stops_on_a_file_it_cannot_read_and_restore_goes_on(tgt_install, tmp_path, cli):
    good = [TargetSpec(IQN.format(n), (tgt_install.store(n),)) for n in (1, 3, 5)]
    gone = TargetSpec(IQN.format(2), (str(tgt_install.pool / "vg-one" / "lv-one-2"),), ("127.0.0.1",))
    tgt_install.save(good[0], gone, *good[1:])
    write_unclosed(tgt_install, f"{IQN.format(4)}.conf", 4)
    unknown = tgt_install.file(IQN.format(6))
    unknown.write_text(f"<target {IQN.format(6)}>\n    backing-store {tgt_install.store(6)}\n"
                       "    write-cache off\n</target>\n")

    started = tgt_install.start()
    assert started.returncode == 255 and "has no EndBlock statement" in started.stderr
    assert tgt_install.targets() == {}

    restored = cli("target", "restore")
    assert restored.rc == 1
    lines = restored.err.splitlines()
    assert lines[:3] == [f"restored {spec.iqn}" for spec in good]
    assert lines[-1] == "3 restored, 0 already present, 3 failed"
    failures = lines[3:-1]
    assert len(failures) == 3 and all(line.startswith("not restored: ") for line in failures)
    assert failures[0].startswith(f"not restored: {gone.iqn}: cannot add {gone.backing_stores[0]} as LUN 1")
    assert failures[1] == f"not restored: {tgt_install.file(IQN.format(4))}: <target {IQN.format(4)}> has no </target>"
    assert failures[2] == f"not restored: {unknown}: line 3: unknown directive 'write-cache'"
    assert tgt_install.luns() == {spec.iqn: spec.backing_stores for spec in good}  # nothing half-made

    ds = {"BACKEND": "file", "POOL_DIR": str(tgt_install.pool), "HOST": "localhost"}
    image = random_image(tmp_path / "img.raw", 1024 * 1024)
    registered = remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, ds), "2")
    assert registered.returncode == 0, registered.stderr
    assert tgt_install.luns()[gone.iqn] == gone.backing_stores
    assert read_lun(tgt_install.daemon, gone.iqn, tmp_path / "lun.raw")[:len(image.read_bytes())] == image.read_bytes()
    again = cli("target", "restore")
    assert (again.rc, again.err.splitlines()[-1]) == (1, "0 restored, 4 already present, 2 failed")


def test_tgt_start_goes_on_past_a_failing_tgtadm_and_so_does_restore(tgt_install, cli, tmp_path):
    good = [TargetSpec(IQN.format(n), (tgt_install.store(n),)) for n in (1, 3)]
    refused = TargetSpec(IQN.format(2), (str(tgt_install.pool / "socket"),))
    with socket.socket(socket.AF_UNIX) as listener:  # leaves a file tgtd cannot open
        listener.bind(refused.backing_stores[0])
    tgt_install.save(good[0], refused, good[1])

    started = tgt_install.start()  # the include file one-iscsi writes says ignore-errors
    assert started.returncode == 0, started.stdout + started.stderr
    assert tgt_install.luns() == {good[0].iqn: good[0].backing_stores, refused.iqn: (),
                                  good[1].iqn: good[1].backing_stores}

    tgt_install.daemon.delete_all_targets()
    restored = cli("target", "restore")
    assert restored.rc == 1
    assert restored.err.splitlines()[-1] == "2 restored, 0 already present, 1 failed"
    assert f"not restored: {refused.iqn}: cannot add {refused.backing_stores[0]} as LUN 1" in restored.err
    assert tgt_install.luns() == {spec.iqn: spec.backing_stores for spec in good}

    # a cp of the image takes over the target tgt-admin leaves without its LUN
    assert tgt_install.start().returncode == 0 and tgt_install.luns()[refused.iqn] == ()
    ds = {"BACKEND": "file", "POOL_DIR": str(tmp_path / "other-pool"), "HOST": "localhost"}
    image = random_image(tmp_path / "img.raw", 1024 * 1024)
    registered = remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, ds), "2")
    assert registered.returncode == 0, registered.stderr
    assert tgt_install.luns()[refused.iqn] == (str(tmp_path / "other-pool" / "vg-one" / "lv-one-2"),)
    assert remote("datastore", "rm", action_xml({"SOURCE": refused.iqn}, {}, ds), "2").returncode == 0

def test_tgt_start_gives_each_target_the_tid_its_file_records(tgt_install, cli, tmp_path):
    """controller_tid: tgt-admin makes the target at that TID (not at the next one, in IQN order), so a
    saved file stays true across a restart; the targets come back unmarked, and a lookup marks each again."""
    made = {IQN.format(3): ("--tid", "7"), IQN.format(1): (), IQN.format(2): ("--tid", "3")}
    for iqn, tid in made.items():
        assert cli("target", "new", *tid, iqn).rc == 0
        assert cli("lun", "bind", iqn, tgt_install.store(int(iqn[-1]))).rc == 0
    tids = {IQN.format(3): 7, IQN.format(1): 8, IQN.format(2): 3}
    assert {iqn: target.tid for iqn, target in tgt_install.targets().items()} == tids
    assert {iqn: tgtconf.parse(tgt_install.file(iqn).read_text()).tid for iqn in tids} == tids
    assert "controller_tid 8\n" in tgt_install.file(IQN.format(1)).read_text()

    empty_tgtd(tgt_install)
    started = tgt_install.start()
    assert started.returncode == 0, started.stdout + started.stderr
    assert {iqn: target.tid for iqn, target in tgt_install.targets().items()} == tids
    assert tgt_install.luns() == {iqn: (tgt_install.store(int(iqn[-1])),) for iqn in tids}
    assert marks(tgt_install, tids) == {iqn: "" for iqn in tids}  # made anew: no mark
    assert cli("target", "tid", IQN.format(1)).out == "8\n"  # through the listing, then marked
    assert marks(tgt_install, tids)[IQN.format(1)] == IQN.format(1)
    restored = cli("target", "restore")  # marks every target present
    assert (restored.rc, restored.err.splitlines()[-1]) == (0, "0 restored, 3 already present")
    assert marks(tgt_install, tids) == {iqn: iqn for iqn in tids}

    empty_tgtd(tgt_install)
    assert cli("target", "restore").err.splitlines()[-1] == "3 restored, 0 already present"
    assert {iqn: target.tid for iqn, target in tgt_install.targets().items()} == tids  # the recorded TIDs
    assert marks(tgt_install, tids) == {iqn: iqn for iqn in tids}


def marks(installed: Tgt, tids: dict) -> dict:
    """{IQN: the name its TID is marked with}."""
    return {iqn: tgt.parse_mark(installed.daemon.tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target",
                                                        "--tid", str(tid)).stdout) for iqn, tid in tids.items()}


def test_restore_makes_a_target_whose_recorded_tid_another_took_at_another_and_records_it(tgt_install, cli):
    for n in (1, 2):
        assert cli("target", "new", IQN.format(n)).rc == 0
        assert cli("lun", "bind", IQN.format(n), tgt_install.store(n)).rc == 0
    empty_tgtd(tgt_install)
    assert tgt_install.daemon.tgtadm("--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1", "-T",
                                     FOREIGN).returncode == 0  # made before one-iscsi's came back
    restored = cli("target", "restore")
    assert (restored.rc, restored.err.splitlines()[-1]) == (0, "2 restored, 0 already present")
    tids = {iqn: target.tid for iqn, target in tgt_install.targets().items()}
    assert tids == {FOREIGN: 1, IQN.format(1): 3, IQN.format(2): 2}  # 3: where the last allocation left off
    assert tgtconf.parse(tgt_install.file(IQN.format(1)).read_text()).tid == 3
    assert cli("target", "tid", IQN.format(1)).out == "3\n"
    empty_tgtd(tgt_install)
    assert tgt_install.start().returncode == 0
    assert {iqn: target.tid for iqn, target in tgt_install.targets().items()} == {IQN.format(1): 3, IQN.format(2): 2}


def test_a_file_of_an_earlier_version_without_tid_comes_back_and_restore_records_its_tid(tgt_install, cli):
    old = TargetSpec(IQN.format(1), (tgt_install.store(1),))
    tgt_install.save(old)
    assert "controller_tid" not in tgt_install.file(old.iqn).read_text()
    assert tgt_install.start().returncode == 0
    assert cli("target", "tid", old.iqn).out == "1\n"  # through the listing
    assert cli("target", "restore").err.splitlines()[-1] == "0 restored, 1 already present"
    assert tgtconf.parse(tgt_install.file(old.iqn).read_text()) == old.with_tid(1)
    assert marks(tgt_install, {old.iqn: 1}) == {old.iqn: old.iqn}


LATE = "iqn.2099-01.org.example:storage.late"  # after one-iscsi's names, in tgt-admin's order


def start_tids_problem(installed: Tgt, base_tid: str = "1") -> str:
    """doctor's check of the TIDs tgt's start gives: what it says."""
    cfg = config.load(env={**installed.env, "ONE_ISCSI_BASE_TID": base_tid})
    with Runner("localhost", cfg).session() as session:
        try:
            return doctor.check_start_tids(session, str(installed.targets_conf))
        except doctor.Problem as problem:
            return f"problem: {problem}"


def declared(installed: Tgt, *files: Path) -> list:
    """The targets tgt's configuration declares: the given files' and one-iscsi's saved ones."""
    return [target for file in (*files, *sorted(installed.conf_dir.glob("*.conf")))
            for target in tgtstart.declared(file.read_text(), str(file))]


def test_a_target_without_tid_takes_a_recorded_one_at_tgt_start_and_doctor_says_so_before(tgt_install, cli):
    """tgt-admin numbers a target without controller_tid one above the target before it (in name order): here
    the TID lv-one-1's file records, so tgt-admin's `--op new` of it fails and, past it, its LUNs and ACL go to
    lv-one-1's target (its LUN 1 is refused there, its ACL `ALL` opens that target to everyone). tgtstart's simulation gives the TIDs the real tgt-admin gives; doctor names the clash
    before a restart makes it, and passes once the target records a TID of its own below BASE_TID."""
    for n, tid in ((1, "8"), (2, "7")):
        assert cli("target", "new", "--tid", tid, IQN.format(n)).rc == 0
        assert cli("lun", "bind", IQN.format(n), tgt_install.store(n)).rc == 0
    late_store = tgt_install.store(9)
    storage = tgt_install.targets_conf.parent / "conf.d" / "storage.conf"
    storage.write_text(f"<target {LATE}>\n    backing-store {late_store}\n</target>\n")
    said = start_tids_problem(tgt_install)
    assert said.startswith(f"problem: at tgt's start {LATE} ({storage}) takes TID 8, which {IQN.format(1)} "
                           f"({tgt_install.file(IQN.format(1))}) records"), said
    assert tgtstart.start_tids(declared(tgt_install, storage)) == {IQN.format(1): 8, IQN.format(2): 7, LATE: 8}

    empty_tgtd(tgt_install)
    assert tgt_install.start().returncode == 0  # ignore-errors: the failed `--op new` does not stop it
    assert {iqn: target.tid for iqn, target in tgt_install.targets().items()} == {IQN.format(1): 8, IQN.format(2): 7}
    hit = tgt_install.targets()[IQN.format(1)]  # what doctor warned of: the late target's ACL on lv-one-1's
    assert "ALL" in hit.acl and tgt_install.inquire(IQN.format(1))[0] == 0  # now open to every initiator
    assert [lun.backing_store for lun in hit.luns] == [tgt_install.store(1)]  # its LUN 1 clashed, refused

    storage.write_text(f"<target {LATE}>\n    controller_tid 3\n    backing-store {late_store}\n</target>\n")
    assert start_tids_problem(tgt_install).startswith(f"problem: {LATE} ({storage}) records TIDs from BASE_TID 1")
    assert start_tids_problem(tgt_install, base_tid="5") == (
        "every target of tgt's configuration records a TID of its own (3 targets)")
    empty_tgtd(tgt_install)
    assert tgt_install.start().returncode == 0
    tids = {iqn: target.tid for iqn, target in tgt_install.targets().items()}
    assert tids == tgtstart.start_tids(declared(tgt_install, storage)) == {IQN.format(1): 8, IQN.format(2): 7, LATE: 3}
    assert tgt_install.luns() == {IQN.format(1): (tgt_install.store(1),), IQN.format(2): (tgt_install.store(2),),
                                  LATE: (late_store,)}


def test_restore_records_the_tids_of_earlier_files_in_one_go_and_tgt_start_keeps_them_and_their_access(
        tgt_install, tmp_path, cli):
    """Files of an earlier version (no controller_tid), brought back by tgt's start at TIDs 1..4 in name order:
    restore writes the four files again together (write_all), and what it wrote is what tgt-admin -e reads."""
    data = os.urandom(64 * 1024)
    specs = access_specs(tgt_install, data)
    tgt_install.save(*specs)
    assert tgt_install.start().returncode == 0
    tids = {iqn: target.tid for iqn, target in tgt_install.targets().items()}
    assert tids == {IQN.format(n): n for n in (1, 2, 3, 4)}
    restored = cli("target", "restore")
    assert (restored.rc, restored.err.splitlines()[-1]) == (0, "0 restored, 4 already present")
    assert [tgtconf.parse(tgt_install.file(spec.iqn).read_text()) for spec in specs] == [
        spec.with_tid(tids[spec.iqn]) for spec in specs]
    assert {tgt_install.file(spec.iqn).stat().st_mode & 0o777 for spec in specs} == {0o600}
    assert [name for name in os.listdir(tgt_install.conf_dir) if name.startswith(".")] == []
    assert start_tids_problem(tgt_install) == "every target of tgt's configuration records a TID of its own (4 targets)"

    # a target first in name order at TID 20: without the recorded TIDs, one-iscsi's would follow it at 21..24
    early = "iqn.2000-01.org.example:early"
    (tgt_install.targets_conf.parent / "conf.d" / "early.conf").write_text(
        f"<target {early}>\n    controller_tid 20\n    backing-store {tgt_install.store(8)}\n</target>\n")
    empty_tgtd(tgt_install, "one")
    started = tgt_install.start()
    assert started.returncode == 0, started.stdout + started.stderr
    assert {iqn: target.tid for iqn, target in tgt_install.targets().items()} == {early: 20, **tids}
    assert marks(tgt_install, tids) == {iqn: "" for iqn in tids}  # made anew by tgt's start
    assert_access(tgt_install, data, tmp_path)


def test_a_controller_tid_that_is_no_tid_reaches_tgt_admins_shell_and_doctor_names_it(tgt_install, tmp_path):
    """tgt-admin puts controller_tid into the tgtadm command line it hands to sh, as it is (seen with
    --pretend, which prints those lines instead of running them): doctor names such a value."""
    canary = tmp_path / "canary"
    storage = tgt_install.targets_conf.parent / "conf.d" / "storage.conf"
    storage.write_text(f"<target {LATE}>\n    controller_tid 3;touch${{IFS}}{canary}\n"
                       f"    backing-store {tgt_install.store(9)}\n</target>\n")
    assert start_tids_problem(tgt_install) == (
        f"problem: {LATE} ({storage}) has controller_tid '3;touch${{IFS}}{canary}', which is no TID: tgt-admin hands "
        "it to sh as it is; give it a number")
    pretended = tgt_install.start("--pretend")
    assert f"--tid 3;touch${{IFS}}{canary} -T {LATE}" in pretended.stdout
    assert not canary.exists() and tgt_install.targets() == {}


HAND = "iqn.2001-04.com.example:storage.by-hand"  # any name: the saved file is what makes a target one-iscsi's


def empty_tgtd(installed: Tgt, *users: str) -> None:
    """What a tgtd restart leaves: no target, no account."""
    installed.daemon.delete_all_targets()
    for user in users:
        installed.daemon.tgtadm("--lld", "iscsi", "--op", "delete", "--mode", "account", "--user", user)
    assert installed.targets() == {}


def assert_hand_made_access(installed: Tgt, store: str) -> None:
    assert installed.luns() == {HAND: (store,)}
    assert installed.targets()[HAND].accounts == ("hand",)
    assert installed.inquire(HAND, initiator=NODE1, user="hand", password=PASSWORD)[0] == 0
    assert "Authentication failure" in installed.inquire(HAND, initiator=NODE1, user="hand",
                                                         password="wrong-pass-123")[1]
    assert "Target not found" in installed.inquire(HAND, initiator=NODE2, user="hand", password=PASSWORD)[1]


def test_a_target_made_by_hand_comes_back_with_its_acl_and_chap(tgt_install, tmp_path, cli):
    store = tgt_install.store(7)
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    assert cli("target", "new", HAND).out == "1\n"
    assert cli("lun", "bind", HAND, store).rc == 0
    assert cli("target", "acl", "add", "1", "10.9.9.9", NODE1).rc == 0
    done = cli("target", "chap", "set", HAND, "--user", "hand", "--password-file", str(password_file))
    assert (done.rc, done.out, done.err) == (0, "", "")
    assert tgtconf.parse(tgt_install.file(HAND).read_text()) == TargetSpec(HAND, (store,), ("10.9.9.9", NODE1),
                                                                         "hand", PASSWORD, tid=1)
    assert_hand_made_access(tgt_install, store)

    empty_tgtd(tgt_install, "hand")
    restored = cli("target", "restore")
    assert (restored.rc, restored.err.splitlines()[-1]) == (0, "1 restored, 0 already present")
    assert_hand_made_access(tgt_install, store)

    empty_tgtd(tgt_install, "hand")
    started = tgt_install.start()
    assert started.returncode == 0, started.stdout + started.stderr
    assert_hand_made_access(tgt_install, store)
    listed = json.loads(cli("target", "list", "--json").out)
    assert [(target["iqn"], target["managed"]) for target in listed] == [(HAND, True)]


@pytest.mark.parametrize("command", [
    ["target", "acl", "add", "1", "127.0.0.1;touch${{IFS}}{canary}"],
    ["target", "acl", "add", "1", "$(touch${{IFS}}{canary})"],
    ["target", "acl", "add", "1", "fe80::1%;touch${{IFS}}{canary}"],
    ["target", "acl", "add", "1", "iqn.1993-08.org.debian:01:a`touch {canary}`"],
    ["target", "chap", "set", "1", "--user", "one;touch${{IFS}}{canary}", "--password-file", "{password}"],
    ["lun", "bind", "1", "/srv/p$(touch${{IFS}}{canary})"],
    ["lun", "bind", "1", "{store};touch${{IFS}}{canary}"],
])
def test_a_hostile_value_given_by_hand_never_reaches_a_target_file(tgt_install, tmp_path, cli, command):
    canary, password = tmp_path / "canary", tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    store = tgt_install.store(7)
    assert cli("target", "new", HAND).out == "1\n"
    assert cli("lun", "bind", "1", store).rc == 0
    saved = tgt_install.file(HAND).read_text()
    done = cli(*[word.format(canary=canary, password=password, store=store) for word in command])
    assert done.rc == 2, done.err
    assert tgt_install.file(HAND).read_text() == saved
    empty_tgtd(tgt_install, "hand")
    started = tgt_install.start()
    assert started.returncode == 0, started.stdout + started.stderr
    assert tgt_install.luns() == {HAND: (store,)}
    assert not canary.exists()


def test_a_target_made_by_hand_without_lun_or_initiator_comes_back_closed(tgt_install, cli):
    assert cli("target", "new", HAND).rc == 0
    assert tgt_install.targets()[HAND].acl == ()
    empty_tgtd(tgt_install)
    assert tgt_install.start().returncode == 0
    assert tgt_install.targets()[HAND].acl == (NO_ADDRESS,)  # not ALL: nobody is let in
    assert "Target not found" in tgt_install.inquire(HAND)[1]
    listed = cli("target", "acl", "list", HAND, "--json")
    assert json.loads(listed.out) == []  # the placeholder is no entry of the ACL
    added = cli("target", "acl", "add", HAND, "ALL")
    assert (added.rc, added.err) == (0, "")  # no "the other entries restrict nothing"
    assert cli("target", "acl", "remove", HAND, "ALL").err == f"{HAND} now lets no initiator in\n"
    empty_tgtd(tgt_install)
    assert cli("target", "restore").rc == 0
    assert (tgt_install.targets()[HAND].luns, tgt_install.targets()[HAND].acl) == ((), ())


def test_luns_by_number_and_removed_ones_come_back_as_they_were(tgt_install, cli):
    """tgt-admin numbers plain backing-store lines by path, skipping missing
    ones: a target of several LUNs is saved with their numbers."""
    stores = {3: tgt_install.store(1), 1: tgt_install.store(2), 5: tgt_install.store(3)}
    assert cli("target", "new", HAND).rc == 0
    for lun, store in stores.items():
        assert cli("lun", "bind", HAND, store, "--lun", str(lun)).rc == 0
    assert cli("lun", "unbind", HAND, "--lun", "5").rc == 0
    assert cli("target", "bind-all", HAND).rc == 0
    expected = [(1, stores[1]), (3, stores[3])]
    empty_tgtd(tgt_install)
    assert tgt_install.start().returncode == 0
    assert [(lun.lun, lun.backing_store) for lun in tgt_install.targets()[HAND].luns] == expected
    empty_tgtd(tgt_install)
    assert cli("target", "restore").rc == 0
    assert [(lun.lun, lun.backing_store) for lun in tgt_install.targets()[HAND].luns] == expected


FOREIGN = "iqn.2001-04.com.example:storage.foreign"


def test_a_target_one_iscsi_did_not_make_is_changed_only_with_force(tgt_install, tmp_path, cli):
    store, other = tgt_install.store(8), tgt_install.store(9)
    for args in (["--op", "new", "--mode", "target", "--tid", "5", "-T", FOREIGN],
                 ["--op", "new", "--mode", "logicalunit", "--tid", "5", "--lun", "1", "-b", store],
                 ["--op", "bind", "--mode", "target", "--tid", "5", "-I", "10.0.0.1"]):
        assert tgt_install.daemon.tgtadm("--lld", "iscsi", *args).returncode == 0
    before = tgt_install.targets()
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    refusal = (f"one-iscsi: error: target {FOREIGN} (TID 5) on localhost was not made by one-iscsi "
               f"(no {tgt_install.file(FOREIGN)}): use --force to {{}} it anyway\n")
    for args in (["lun", "bind", "5", other, "--lun", "2"], ["lun", "unbind", FOREIGN],
                 ["target", "acl", "add", "5", "ALL"], ["target", "acl", "remove", "5", "10.0.0.1"],
                 ["target", "bind-all", "5"], ["target", "chap", "set", "5", "--user", "u", "--password-file",
                                               str(password_file)],
                 ["target", "chap", "unset", "5"]):
        refused = cli(*args)
        assert (refused.rc, refused.err) == (1, refusal.format("change")), args
    deleted = cli("target", "delete", FOREIGN)
    assert (deleted.rc, deleted.err) == (1, refusal.format("delete"))
    assert tgt_install.targets() == before
    assert json.loads(cli("target", "show", "5", "--json").out)["managed"] is False
    assert cli("target", "restore").err.splitlines()[-1] == "0 restored, 0 already present"

    forced = cli("target", "acl", "add", "5", "10.0.0.2", "--force")
    assert (forced.rc, forced.err) == (0, f"{FOREIGN} is not one-iscsi's: changed in tgtd only, its own "
                                          "configuration is not\n")
    assert tgt_install.targets()[FOREIGN].acl == ("10.0.0.1", "10.0.0.2")
    assert not tgt_install.file(FOREIGN).exists()
    assert cli("target", "delete", "5", "--force").rc == 0
    assert tgt_install.targets() == {}
