"""`target` and `lun` subcommands against a real tgtd, data reached with libiscsi."""
import json
import subprocess

from support.commands import quiet
from support.driver import action_xml, random_image, remote

BASE = "iqn.2012-02.org.opennebula:localhost.vg-one"


def test_full_flow_new_bind_lun_list_inquire_delete(tgtd, cli, tmp_path):
    iqn = f"{BASE}.lv-one-1"
    store = tmp_path / "lv-one-1.img"
    subprocess.run(["truncate", "-s", "16M", str(store)], check=True)

    new = cli("target", "new", iqn)
    assert (new.rc, new.out, new.err) == (0, "1\n", "")
    assert cli("target", "bind-all", "1").rc == 0
    assert cli("lun", "bind", "1", str(store)).rc == 0

    listed = cli("target", "list", "--json")
    assert listed.rc == 0
    assert json.loads(listed.out) == [{
        "tid": 1, "iqn": iqn, "acl": ["ALL"], "accounts": [], "sessions": 0, "initiators": [],
        "luns": [{"lun": 1, "backing_store": str(store), "size_mb": 17, "type": "disk"}]}]

    inquiry = quiet(["iscsi-inq", tgtd.url(iqn)])
    assert inquiry.returncode == 0, inquiry.stderr
    assert "Peripheral Device Type" in inquiry.stdout or "Direct" in inquiry.stdout

    assert cli("target", "delete", iqn).rc == 0
    assert tgtd.target_ids() == []
    assert json.loads(cli("target", "list", "--json").out) == []


def test_lowest_free_tid_from_base_tid(tgtd, cli, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_BASE_TID", "5")
    assert cli("target", "new", f"{BASE}.lv-one-1").out == "5\n"
    assert cli("target", "new", "--tid", "6", f"{BASE}.lv-one-2").out == "6\n"
    assert cli("target", "new", f"{BASE}.lv-one-3").out == "7\n"
    assert cli("target", "delete", "6").rc == 0
    assert cli("target", "new", f"{BASE}.lv-one-4").out == "6\n"
    assert sorted(tgtd.target_ids()) == [5, 6, 7]


def test_tid_lookup_is_exact(tgtd, cli):
    assert cli("target", "new", "--tid", "3", f"{BASE}.lv-one-50").rc == 0
    assert cli("target", "new", "--tid", "4", f"{BASE}.lv-one-5").rc == 0
    assert cli("target", "tid", f"{BASE}.lv-one-5").out == "4\n"
    assert cli("target", "tid", f"{BASE}.lv-one-50").out == "3\n"
    missing = cli("target", "tid", f"{BASE}.lv-one-500")
    assert missing.rc == 1
    assert missing.err == f"one-iscsi: error: no target named {BASE}.lv-one-500 on localhost\n"
    assert cli("target", "delete", f"{BASE}.lv-one-5").rc == 0
    assert tgtd.target_ids() == [3]


def test_target_made_by_hand_is_listed(tgtd, cli, tmp_path):
    store = tmp_path / "hand made.img"
    subprocess.run(["truncate", "-s", "8M", str(store)], check=True)
    iqn = "iqn.2001-04.com.example:storage.disk1"
    for args in (["--op", "new", "--mode", "target", "--tid", "9", "-T", iqn],
                 ["--op", "new", "--mode", "logicalunit", "--tid", "9", "--lun", "2", "-b", str(store)],
                 ["--op", "bind", "--mode", "target", "--tid", "9", "-I", "10.0.0.0/8"]):
        assert tgtd.tgtadm("--lld", "iscsi", *args).returncode == 0
    shown = json.loads(cli("target", "show", iqn, "--json").out)
    assert (shown["tid"], shown["acl"]) == (9, ["10.0.0.0/8"])
    assert shown["luns"] == [{"lun": 2, "backing_store": str(store), "size_mb": 8, "type": "disk"}]
    table = cli("target", "list")
    assert table.rc == 0
    header, rule, row = table.out.splitlines()
    assert header.split() == ["TID", "IQN", "LUNS", "ACL", "SESSIONS"]
    assert row.split()[:2] == ["9", iqn] and row.split()[-2:] == ["10.0.0.0/8", "0"]
    assert f"2:{store}" in row


def test_show_table_for_people(tgtd, cli):
    iqn = f"{BASE}.lv-one-8"
    cli("target", "new", "--tid", "2", iqn)
    cli("target", "bind-all", "2")
    shown = cli("target", "show", iqn)
    assert shown.rc == 0
    assert shown.out.splitlines()[2].split() == ["TID", "2"]
    assert ["ACL", "ALL"] in [line.split() for line in shown.out.splitlines()]


def test_existing_iqn_is_kept_and_a_taken_tid_refused(tgtd, cli):
    iqn = f"{BASE}.lv-one-1"
    assert cli("target", "new", iqn).rc == 0
    again = cli("target", "new", iqn)
    assert (again.rc, again.out) == (0, "1\n")
    assert again.err == f"target {iqn} already exists on localhost with TID 1: nothing changed\n"
    other_tid = cli("target", "new", "--tid", "2", iqn)
    assert (other_tid.rc, other_tid.err) == (
        1, f"one-iscsi: error: target {iqn} already exists on localhost with TID 1\n")
    taken = cli("target", "new", "--tid", "1", f"{BASE}.lv-one-2")
    assert (taken.rc, taken.err) == (1, "one-iscsi: error: TID 1 is already used on localhost\n")
    assert tgtd.target_ids() == [1]


def test_dry_run_changes_nothing(tgtd, cli):
    result = cli("--dry-run", "target", "new", f"{BASE}.lv-one-1")
    assert result.rc == 0
    assert result.out == f"tgtadm -C {tgtd.control} --lld iscsi --op new --mode target --tid 1 --targetname {BASE}.lv-one-1\n"
    assert tgtd.target_ids() == []


def test_lun_on_other_number_and_missing_backing_store(tgtd, cli, tmp_path):
    assert cli("target", "new", f"{BASE}.lv-one-1").rc == 0
    missing = cli("lun", "bind", "1", str(tmp_path / "absent.img"))
    assert missing.rc == 1
    assert "cannot add" in missing.err and "LUN 1 of TID 1" in missing.err
    assert len(missing.err.splitlines()) == 1
    relative = cli("lun", "bind", "1", "absent.img")
    assert (relative.rc, relative.err) == (
        2, "one-iscsi: error: backing store must be an absolute path, got 'absent.img'\n")


def test_restore_reports_each_target_it_cannot_make_and_restores_the_others(tgtd, cli, tmp_path):
    ds = {"BACKEND": "file", "POOL_DIR": str(tmp_path / "pool"), "HOST": "localhost"}
    image = random_image(tmp_path / "img.raw", 64 * 1024)
    for n in (1, 2, 3):
        done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, ds), str(n))
        assert done.returncode == 0, done.stderr
    for tid in (1, 2):  # as after a tgtd restart, but for the third
        assert tgtd.tgtadm("--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", str(tid)).returncode == 0
    gone = tmp_path / "pool" / "vg-one" / "lv-one-2"
    gone.unlink()

    restored = cli("target", "restore")
    assert restored.rc == 1
    lines = restored.err.splitlines()
    assert lines[0] == f"restored {BASE}.lv-one-1"
    assert lines[1].startswith(f"not restored: {BASE}.lv-one-2: cannot add {gone} as LUN 1 of TID ")
    assert lines[2:] == ["1 restored, 1 already present, 1 failed"]
    shown = json.loads(cli("target", "list", "--json").out)
    assert [(target["iqn"], [lun["backing_store"] for lun in target["luns"]]) for target in shown] == [
        (f"{BASE}.lv-one-{n}", [str(tmp_path / "pool" / "vg-one" / f"lv-one-{n}")]) for n in (1, 3)]

    quiet_run = cli("--quiet", "target", "restore")
    assert quiet_run.rc == 1 and quiet_run.err.splitlines() == lines[1:2]
