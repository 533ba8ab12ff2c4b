"""status and gc against the real tgtd, real files, real LVM2 and the loopback sshd.

The orphans are made as they come about. A `cp` (or `mkfs`) SIGKILLed the
moment it asks tgtd for its target leaves its volume alone: TGTADM is a
wrapper that kills the one-iscsi process then. A volume
removed by hand leaves its target; a target deleted by hand, its saved file
(and, with the volume, an image to restore). A target in use holds a real
iSCSI session: qemu-io (libiscsi) keeps one open for as long as its stdin is.
An image with an action running: a `cp` that the wrapper holds just before
it makes its target, its volume made and its lock held (the wrapper polls
for a file the test writes, with a bound).

status and gc run in this process through a root app made as
cli/__init__.py makes it (the global options), with the two commands
registered at the top level.
"""
import fcntl
import json
import os
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import typer

from oneiscsi import tgt
from oneiscsi.cli import hoist_global_options, root_options
from oneiscsi.cli import status as status_cli
from support.cli import Result
from support.driver import action_xml, random_image, remote, start_remote
from support.lvm import NO_ACTIVATION, must
from support.paths import DATA
from support.wait import wait_for

MIB = 1024 * 1024
BASE = "iqn.2012-02.org.opennebula"
FOREIGN = "iqn.2000-01.com.example:scratch"
QEMU = "iqn.2008-11.org.linux-kvm"  # the initiator name of qemu's libiscsi

TGTADM_WRAPPER = """#!/bin/sh
# tgtadm, except for the target of two images: the one-iscsi asking for the
# first is killed (SIGKILL) there (the first of the callers that is not a
# shell: tgtadm runs in tgt.NEW_TARGET); the one asking for the second waits
# there until the file go exists (polled, at most 60 s).
case " $* " in
  *" --op new --mode target "*".lv-one-{killed} "*)
    caller=$PPID
    while [ "$(cat /proc/$caller/comm)" = sh ]; do caller=$(cut -d " " -f 4 /proc/$caller/stat); done
    kill -KILL "$caller"; exit 1 ;;
  *" --op new --mode target "*".lv-one-{held} "*)
    touch {folder}/waiting
    tries=1200
    while [ ! -e {folder}/go ] && [ "$tries" -gt 0 ]; do sleep 0.05; tries=$((tries - 1)); done ;;
esac
exec tgtadm -C {control} "$@"
"""


def one_iscsi(capsys, *args: str) -> Result:
    """`one-iscsi ARGS` with status and gc as top-level commands, in this process."""
    root = typer.Typer()
    root.callback()(root_options)
    root.command("status")(status_cli.status)
    root.command("gc")(status_cli.gc)
    capsys.readouterr()
    rc = typer.main.get_command(root).main(hoist_global_options(args), prog_name="one-iscsi",
                                           standalone_mode=False)
    out, err = capsys.readouterr()
    return Result(rc or 0, out, err)


def status_of(capsys, *args: str) -> dict:
    """{name: (state, flags, sessions)} from `status --json`."""
    done = one_iscsi(capsys, *args, "status", "--json")
    assert done.rc == 0, done.err
    return {entry["name"]: (entry["state"], entry["flags"], len(entry["sessions"])) for entry in json.loads(done.out)}


def gc_of(capsys, *args: str) -> dict:
    """{name: action} from `gc --json ARGS`, which must succeed."""
    done = one_iscsi(capsys, "gc", "--json", *args)
    assert done.rc == 0, done.err
    return {outcome["name"]: outcome["action"] for outcome in json.loads(done.out)}


def wrap_tgtadm(folder: Path, tgtd, monkeypatch, killed: int, held: int = 0) -> None:
    wrapper = folder / "tgtadm-wrapper"
    wrapper.write_text(TGTADM_WRAPPER.format(killed=killed, held=held, folder=folder, control=tgtd.control))
    wrapper.chmod(0o755)
    monkeypatch.setenv("ONE_ISCSI_TGTADM", str(wrapper))


def mkfs(cli, image_id: int, datastore: dict = None) -> None:
    done = cli("image", "mkfs", action_xml({"SIZE": "4", "FSTYPE": "raw"}, {}, datastore or {}), str(image_id))
    assert done.rc == 0, done.err


def targets_of(tgtd) -> dict:
    """{IQN: its target} of the real tgtd."""
    shown = tgtd.tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target").stdout
    return {target.iqn: target for target in tgt.parse_show(shown)}


def delete_by_hand(tgtd, iqn: str) -> None:
    tid = targets_of(tgtd)[iqn].tid
    assert tgtd.tgtadm("--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", str(tid)).returncode == 0


def sparse(path: Path, size: int) -> None:
    with open(path, "wb") as made:
        made.truncate(size)


def make_foreign_target(tgtd, folder: Path) -> None:
    """A target one-iscsi did not make, whose backing file is gone."""
    store = folder / "scratch.img"
    sparse(store, MIB)
    for args in (["--mode", "target", "--tid", "50", "-T", FOREIGN],
                 ["--mode", "logicalunit", "--tid", "50", "--lun", "1", "-b", str(store)]):
        assert tgtd.tgtadm("--lld", "iscsi", "--op", "new", *args).returncode == 0
    store.unlink()


@contextmanager
def session_on(tgtd, iqn: str):
    """A real iSCSI session to iqn for the time of the block: qemu-io holding LUN 1 open."""
    reader = subprocess.Popen(["qemu-io", "-r", "-f", "raw", tgtd.url(iqn)], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: targets_of(tgtd)[iqn].sessions, timeout=30, what=f"a session to {iqn}")
        yield
    finally:
        reader.stdin.close()  # qemu-io ends at the end of its input
        try:
            reader.wait(timeout=10)
        except subprocess.TimeoutExpired:
            reader.kill()
            reader.wait()
    wait_for(lambda: iqn not in targets_of(tgtd) or not targets_of(tgtd)[iqn].sessions, timeout=30,
             what=f"the session to {iqn} to end")


@contextmanager
def lock_held(path: str):
    """The lock file held as another one-iscsi holds it (flock)."""
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
def pool(tmp_path, tgtd, monkeypatch) -> Path:
    """The file backend in the test's folder, on localhost: the images' folder."""
    monkeypatch.setenv("ONE_ISCSI_BACKEND", "file")
    monkeypatch.setenv("ONE_ISCSI_POOL_DIR", str(tmp_path / "pool"))
    return tmp_path / "pool" / "vg-one"


def everything(tgtd, pool: Path, conf_dir: Path) -> tuple:
    """What gc could change: the targets, the pool's files, the saved files."""
    return (sorted(targets_of(tgtd)), sorted(path.name for path in pool.iterdir()),
            sorted(path.name for path in conf_dir.glob("*.conf")))


def test_status_flags_each_kind_and_gc_removes_exactly_the_orphans(cli, capsys, pool, tgtd, tmp_path, monkeypatch):
    conf_dir = tmp_path / "tgt-conf.d" / "one-iscsi"
    iqn = f"{BASE}:localhost.vg-one.lv-one-{{}}".format
    wrap_tgtadm(tmp_path, tgtd, monkeypatch, killed=12, held=18)
    image = random_image(tmp_path / "image.raw", MIB)
    for image_id in (11, 13, 14, 15, 17):
        mkfs(cli, image_id)
    killed = remote("datastore", "cp", action_xml({"PATH": str(image)}), "12")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (pool / "lv-one-13").unlink()      # its target stays, with its saved file
    delete_by_hand(tgtd, iqn(14))
    (pool / "lv-one-14").unlink()      # its saved file stays
    delete_by_hand(tgtd, iqn(17))      # what a tgtd restart without restore does: volume and saved file stay
    make_foreign_target(tgtd, tmp_path)
    (pool / "README").write_text("not an image\n")
    with session_on(tgtd, iqn(15)):
        (pool / "lv-one-15").unlink()  # its target stays, in use
        held = start_remote("datastore", "cp", action_xml({"PATH": str(image)}), "18")
        try:
            wait_for(lambda: (tmp_path / "waiting").exists(), timeout=30, what="cp of 18 to reach its target")
            assert status_of(capsys) == {
                "lv-one-11": ("ok", [], 0),
                "lv-one-12": ("orphan", ["no-target"], 0),
                "lv-one-13": ("orphan", ["store-missing", "no-volume"], 0),
                "lv-one-14": ("orphan", ["not-in-tgtd", "store-missing", "no-volume"], 0),
                "lv-one-15": ("orphan", ["store-missing", "no-volume"], 1),
                "lv-one-17": ("incomplete", ["no-target", "not-in-tgtd"], 0),
                "lv-one-18": ("orphan", ["no-target"], 0),
                FOREIGN: ("foreign", ["store-missing"], 0),
            }
            before = everything(tgtd, pool, conf_dir)
            dry = one_iscsi(capsys, "gc")
            assert dry.rc == 0 and everything(tgtd, pool, conf_dir) == before
            assert dry.out.splitlines() == [
                f"would remove volume {pool}/lv-one-12 (no target, no saved file)",
                f"would remove target {iqn(13)} (TID 2) and its saved file (no volume, no backing store)",
                f"would remove saved file {conf_dir}/{iqn(14)}.conf (no target, no volume, no backing store)"]
            assert dry.err.splitlines() == [
                f"skipped target {iqn(15)} (TID 4) and its saved file: in use by {QEMU}",
                f"skipped volume {pool}/lv-one-18: another one-iscsi works on it "
                f"(holds {tmp_path}/one-iscsi.lock.vg-one.lv-one-18)",
                "3 to remove, 2 skipped", "run `one-iscsi gc --yes` to remove them"]
            assert gc_of(capsys, "--yes") == {"lv-one-12": "removed", "lv-one-13": "removed",
                                              "lv-one-14": "removed", "lv-one-15": "skipped", "lv-one-18": "skipped"}
            assert everything(tgtd, pool, conf_dir) == (
                sorted([iqn(11), iqn(15), FOREIGN]), ["README", "lv-one-11", "lv-one-17", "lv-one-18"],
                sorted(f"{iqn(n)}.conf" for n in (11, 15, 17)))
        finally:
            (tmp_path / "go").touch()
            out, err = held.communicate(timeout=60)
        assert (held.returncode, out) == (0, f"{iqn(18)} 1\n"), err
    assert gc_of(capsys, "--yes") == {"lv-one-15": "removed"}
    assert status_of(capsys) == {
        "lv-one-11": ("ok", [], 0), "lv-one-17": ("incomplete", ["no-target", "not-in-tgtd"], 0),
        "lv-one-18": ("ok", [], 0), FOREIGN: ("foreign", ["store-missing"], 0)}
    assert gc_of(capsys, "--yes") == {}


def test_status_table(cli, capsys, pool, tgtd):
    mkfs(cli, 11)
    sparse(pool / "lv-one-12", 3 * MIB + 1)
    done = one_iscsi(capsys, "status")
    assert done.rc == 0
    header, _, *rows = [line.split() for line in done.out.splitlines()]
    assert header == ["NAME", "TID", "MIB", "SESSIONS", "STATE", "FLAGS"]
    assert rows == [["lv-one-11", "1", "4", "0", "ok", "-"], ["lv-one-12", "-", "4", "0", "orphan", "no-target"]]
    assert done.err == "1 ok, 1 orphan\n`one-iscsi gc` shows what it would remove\n"


def test_on_lvm_gc_removes_the_lv_of_a_killed_mkfs_and_the_target_of_a_removed_lv(cli, capsys, vg, tgtd,
                                                                                   tmp_path, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_BACKEND", "lvm")
    monkeypatch.setenv("ONE_ISCSI_VG_NAME", vg.name)
    wrap_tgtadm(tmp_path, tgtd, monkeypatch, killed=21)
    killed = remote("datastore", "mkfs", action_xml({"SIZE": "4", "FSTYPE": "raw"}, {}, vg.template), "21")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    for image_id in (22, 23, 24):
        mkfs(cli, image_id)
    must([str(DATA / "lvremove-mapped"), "-f", f"{vg.name}/lv-one-22"])  # removed by hand under its target
    os.unlink(f"/dev/{vg.name}/lv-one-24")  # as an LV not activated: its device is gone, its data is not
    must(["lvcreate", "--config", NO_ACTIVATION, "-L", "4M", "-n", "scratch", vg.name])
    assert status_of(capsys) == {
        "lv-one-21": ("orphan", ["no-target"], 0),
        "lv-one-22": ("orphan", ["store-missing", "no-volume"], 0),
        "lv-one-23": ("ok", [], 0),
        "lv-one-24": ("incomplete", ["store-missing"], 0),
    }
    assert gc_of(capsys) == {"lv-one-21": "would remove", "lv-one-22": "would remove"}
    assert sorted(vg.lvs()) == ["lv-one-21", "lv-one-23", "lv-one-24", "scratch"]
    assert gc_of(capsys, "--yes") == {"lv-one-21": "removed", "lv-one-22": "removed"}
    assert sorted(vg.lvs()) == ["lv-one-23", "lv-one-24", "scratch"]
    assert sorted(targets_of(tgtd)) == [vg.iqn(23), vg.iqn(24)]
    assert not os.path.lexists(f"/dev/{vg.name}/lv-one-21")


def test_over_ssh_status_takes_one_connection_and_gc_one_more_per_removal(cli, capsys, pool, tgtd, sshd, tmp_path,
                                                                         monkeypatch):
    """Counted by an ssh wrapper. The lock of lv-one-34 is held here as
    run.py holds it (flock): the remote probe sees it, and gc skips the
    image without a connection of its own."""
    count = tmp_path / "connections"
    counting = tmp_path / "counting-ssh"
    counting.write_text(f'#!/bin/sh\necho >> {count}\nexec {sshd.ssh} "$@"\n')
    counting.chmod(0o755)
    monkeypatch.setenv("ONE_ISCSI_SSH", str(counting))

    def connections(run, *args: str) -> int:
        """The ssh connections run(*args) made."""
        count.write_text("")
        run(*args)
        return len(count.read_text().splitlines())

    datastore = {"HOST": "tgtserver"}
    for image_id in (31, 32):
        mkfs(cli, image_id, datastore)
    (pool / "lv-one-32").unlink()
    sparse(pool / "lv-one-33", MIB)
    sparse(pool / "lv-one-34", MIB)
    assert connections(status_of, capsys, "-H", "tgtserver") == 1
    assert status_of(capsys, "-H", "tgtserver") == {
        "lv-one-31": ("ok", [], 0), "lv-one-32": ("orphan", ["store-missing", "no-volume"], 0),
        "lv-one-33": ("orphan", ["no-target"], 0), "lv-one-34": ("orphan", ["no-target"], 0)}
    with lock_held(f"{tmp_path}/one-iscsi.lock.vg-one.lv-one-34"):
        assert connections(gc_of, capsys, "-H", "tgtserver") == 1
        assert connections(gc_of, capsys, "-H", "tgtserver", "--yes") == 3
        assert gc_of(capsys, "-H", "tgtserver") == {"lv-one-34": "skipped"}
    assert sorted(path.name for path in pool.iterdir()) == ["lv-one-31", "lv-one-34"]
    assert sorted(targets_of(tgtd)) == [f"{BASE}:tgtserver.vg-one.lv-one-31"]


def test_status_flags_a_saved_file_whose_tid_is_stale_and_restore_records_the_tids_tgtd_has(cli, capsys, pool, tgtd):
    iqn = f"{BASE}:localhost.vg-one.lv-one-{{}}".format
    for image_id in (21, 22):
        mkfs(cli, image_id)  # TIDs 1 and 2, recorded in their files
    delete_by_hand(tgtd, iqn(21))  # made again by hand at another TID
    for args in (["--op", "new", "--mode", "target", "--tid", "7", "-T", iqn(21)],
                 ["--op", "new", "--mode", "logicalunit", "--tid", "7", "--lun", "1", "-b", str(pool / "lv-one-21")],
                 ["--op", "bind", "--mode", "target", "--tid", "7", "-I", "ALL"]):
        assert tgtd.tgtadm("--lld", "iscsi", *args).returncode == 0
    delete_by_hand(tgtd, iqn(22))  # and another took its TID
    assert tgtd.tgtadm("--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "2", "-T", FOREIGN).returncode == 0
    assert status_of(capsys) == {
        "lv-one-21": ("incomplete", ["stale-tid"], 0),
        "lv-one-22": ("incomplete", ["no-target", "not-in-tgtd", "stale-tid"], 0),
        FOREIGN: ("foreign", ["no-lun"], 0),
    }
    said = one_iscsi(capsys, "status").err
    assert "`one-iscsi target restore` records in the saved files the TIDs their targets have" in said
    restored = cli("target", "restore")
    assert (restored.rc, restored.err.splitlines()[-1]) == (0, "1 restored, 1 already present")
    assert status_of(capsys) == {"lv-one-21": ("ok", [], 0), "lv-one-22": ("ok", [], 0),
                                 FOREIGN: ("foreign", ["no-lun"], 0)}
    assert {name: target.tid for name, target in targets_of(tgtd).items()} == {iqn(21): 7, FOREIGN: 2, iqn(22): 3}
