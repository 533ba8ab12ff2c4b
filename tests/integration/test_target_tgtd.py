"""`target` and `lun` subcommands against a real tgtd, data reached with libiscsi."""
import json
import os
import subprocess

import pytest

from oneiscsi import tgtconf
from support.commands import quiet
from support.daemons import session_on
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
        "tid": 1, "iqn": iqn, "managed": True, "acl": ["ALL"], "accounts": [], "sessions": 0, "initiators": [],
        "luns": [{"lun": 1, "backing_store": str(store), "size_mib": 16, "type": "disk"}]}]

    inquiry = quiet(["iscsi-inq", tgtd.url(iqn)])
    assert inquiry.returncode == 0, inquiry.stderr
    assert "Peripheral Device Type" in inquiry.stdout or "Direct" in inquiry.stdout

    assert cli("target", "delete", iqn).rc == 0
    assert tgtd.target_ids() == []
    assert json.loads(cli("target", "list", "--json").out) == []


def test_each_new_tid_is_the_next_free_one_after_the_last_allocated_from_base_tid(tgtd, cli, monkeypatch, tmp_path):
    monkeypatch.setenv("ONE_ISCSI_BASE_TID", "5")
    assert cli("target", "new", f"{BASE}.lv-one-1").out == "5\n"
    assert cli("target", "new", "--tid", "6", f"{BASE}.lv-one-2").out == "6\n"
    assert cli("target", "new", f"{BASE}.lv-one-3").out == "7\n"  # 6, where the last left off, is taken
    assert cli("target", "delete", "6").rc == 0
    assert cli("target", "new", f"{BASE}.lv-one-4").out == "8\n"  # a TID just freed is not given again at once
    assert tgtd.tgtadm("--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "9", "-T",
                       "iqn.2001-04.com.example:by-hand").returncode == 0
    assert cli("target", "new", f"{BASE}.lv-one-5").out == "10\n"  # past a TID taken by hand
    (tmp_path / "one-iscsi.lock.next-tid").unlink()  # the lock directory is emptied at boot
    assert cli("target", "new", f"{BASE}.lv-one-6").out == "11\n"  # one more than the highest in use
    assert sorted(tgtd.target_ids()) == [5, 7, 8, 9, 10, 11]
    files = {name: tgtconf.parse((tmp_path / "tgt-conf.d" / "one-iscsi" / name).read_text()).tid
             for name in os.listdir(tmp_path / "tgt-conf.d" / "one-iscsi")}
    assert files == {f"{BASE}.lv-one-{n}.conf": tid for n, tid in ((1, 5), (3, 7), (4, 8), (5, 10), (6, 11))}


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
    assert (shown["tid"], shown["acl"], shown["managed"]) == (9, ["10.0.0.0/8"], False)
    assert shown["luns"] == [{"lun": 2, "backing_store": str(store), "size_mib": 8, "type": "disk"}]
    table = cli("target", "list")
    assert table.rc == 0
    header, rule, row = table.out.splitlines()
    assert header.split() == ["TID", "IQN", "MANAGED", "SIZE", "LUNS", "ACL", "SESSIONS"]
    assert row.split()[:4] == ["9", iqn, "no", "-"] and row.split()[-2:] == ["10.0.0.0/8", "0"]  # no LUN 1
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


def test_dry_run_changes_nothing(tgtd, cli, tmp_path):
    result = cli("--dry-run", "target", "new", f"{BASE}.lv-one-1")
    assert result.rc == 0
    assert result.out.startswith("sh -c '") and (  # tgt.NEW_TARGET, from TID 1
        f"' new-target 1 1 2147483647 64 {BASE}.lv-one-1 {tmp_path}/one-iscsi.lock.next-tid "
        f"'tgtadm -C {tgtd.control}'\n") in result.out
    assert "dd of=" in result.out  # and the saved file it would write
    assert tgtd.target_ids() == []


def test_lun_bind_says_what_is_wrong_with_the_lun_or_its_store(tgtd, cli, tmp_path):
    assert cli("target", "new", f"{BASE}.lv-one-1").rc == 0
    missing = cli("lun", "bind", "1", str(tmp_path / "absent.img"))
    assert (missing.rc, missing.err) == (
        1, f"one-iscsi: error: no such file or device: {tmp_path / 'absent.img'} on localhost\n")
    relative = cli("lun", "bind", "1", "absent.img")
    assert (relative.rc, relative.err) == (
        2, "one-iscsi: error: backing store must be an absolute path, got 'absent.img'\n")
    first, second = tmp_path / "a.img", tmp_path / "b.img"
    for store in (first, second):
        subprocess.run(["truncate", "-s", "4M", str(store)], check=True)
    assert cli("lun", "bind", "1", str(first)).rc == 0
    taken = cli("lun", "bind", "1", str(second))
    assert (taken.rc, taken.err) == (1, f"one-iscsi: error: LUN 1 of target {BASE}.lv-one-1 (TID 1) on localhost "
                                        f"is in use by {first}: choose another --lun\n")
    assert cli("lun", "bind", f"{BASE}.lv-one-1", str(second), "--lun", "3").rc == 0
    assert cli("target", "new", f"{BASE}.lv-one-2").rc == 0
    shared = cli("lun", "bind", "2", str(first))
    assert (shared.rc, shared.err) == (1, f"one-iscsi: error: {first} is already LUN 1 of target {BASE}.lv-one-1 "
                                          "(TID 1) on localhost: one backing store, one target (--force to bind "
                                          "it anyway)\n")
    assert [(lun["tid"], lun["lun"], lun["size_mib"]) for lun in json.loads(cli("lun", "list", "--json").out)] == [
        (1, 1, 4), (1, 3, 4)]


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


def test_show_takes_a_tid_or_an_iqn_and_sizes_are_whole_mib(tgtd, cli, tmp_path):
    iqn = f"{BASE}.lv-one-3"
    store = tmp_path / "lv-one-3.img"
    subprocess.run(["truncate", "-s", "64M", str(store)], check=True)  # tgtd shows it as 67 MB
    assert cli("target", "new", "--tid", "4", iqn).rc == 0
    assert cli("lun", "bind", "4", str(store)).rc == 0
    by_tid, by_iqn = cli("target", "show", "4", "--json"), cli("target", "show", iqn, "--json")
    assert by_tid.out == by_iqn.out and json.loads(by_tid.out)["luns"][0]["size_mib"] == 64
    table = cli("target", "show", "4").out.splitlines()
    assert ["LUN", "1", str(store), "(64", "MiB)"] in [line.split() for line in table]
    assert ["Managed", "yes"] in [line.split() for line in table]
    assert cli("target", "list").out.splitlines()[2].split()[:5] == ["4", iqn, "yes", "64", "MiB"]
    luns = cli("lun", "list", iqn).out.splitlines()
    assert luns[0].split() == ["TID", "IQN", "LUN", "BACKING", "STORE", "SIZE"]
    assert luns[2].split() == ["4", iqn, "1", str(store), "64", "MiB"]
    missing = cli("target", "show", "5")
    assert (missing.rc, missing.err) == (1, "one-iscsi: error: no target with TID 5 on localhost\n")


def test_acl_add_remove_and_list(tgtd, cli):
    iqn = f"{BASE}.lv-one-4"
    assert cli("target", "new", iqn).rc == 0
    assert json.loads(cli("target", "acl", "list", "1", "--json").out) == []
    assert cli("target", "acl", "add", iqn, "10.0.0.0/24", "iqn.1993-08.org.debian:01:node1").rc == 0
    assert cli("target", "acl", "list", "1").out == "10.0.0.0/24\niqn.1993-08.org.debian:01:node1\n"
    everyone = cli("target", "acl", "add", "1", "ALL")
    assert everyone.err == (f"{iqn} lets every initiator in (ALL): the other entries restrict nothing until ALL "
                            "is removed\n")
    assert cli("target", "acl", "remove", "1", "ALL", "10.0.0.0/24").rc == 0
    assert json.loads(cli("target", "acl", "list", iqn, "--json").out) == ["iqn.1993-08.org.debian:01:node1"]
    absent = cli("target", "acl", "remove", "1", "10.0.0.9")
    assert (absent.rc, absent.err) == (
        1, f"one-iscsi: error: 10.0.0.9 is not in the ACL of target {iqn} (TID 1) on localhost\n")
    hostile = cli("target", "acl", "add", "1", "10.0.0.1;touch /tmp/x")
    assert hostile.rc == 2 and "initiator must be ALL" in hostile.err


def test_chap_password_never_shows_and_comes_only_from_a_file_or_the_terminal(tgtd, cli, tmp_path):
    password = "secret-pass-12"
    password_file = tmp_path / "password"
    password_file.write_text(password + "\n")
    assert cli("target", "new", f"{BASE}.lv-one-5").rc == 0
    dry = cli("--dry-run", "target", "chap", "set", "1", "--user", "u5", "--password-file", str(password_file))
    assert dry.rc == 0 and password not in dry.out + dry.err
    assert "--password '********'" in dry.out
    assert "u5" not in tgtd.tgtadm("--lld", "iscsi", "--op", "show", "--mode", "account").stdout
    no_terminal = cli("target", "chap", "set", "1", "--user", "u5")
    assert (no_terminal.rc, no_terminal.err) == (
        2, "one-iscsi: error: no terminal to ask the CHAP password on: give --password-file FILE "
           "(- for standard input)\n")
    assert cli("target", "chap", "set", "1", "--user", "u5", "--password-file", str(password_file)).rc == 0
    try:
        assert json.loads(cli("target", "show", "1", "--json").out)["accounts"] == ["u5"]
        assert cli("target", "chap", "unset", "1").rc == 0
        assert json.loads(cli("target", "show", "1", "--json").out)["accounts"] == []
    finally:  # accounts outlive targets in the session's tgtd
        tgtd.tgtadm("--lld", "iscsi", "--op", "delete", "--mode", "account", "--user", "u5")


def test_lun_unbind_takes_the_lun_out_of_tgtd_and_the_saved_file(tgtd, cli, tmp_path):
    iqn = f"{BASE}.lv-one-6"
    store = tmp_path / "lv-one-6.img"
    subprocess.run(["truncate", "-s", "8M", str(store)], check=True)
    assert cli("target", "new", iqn).rc == 0
    assert cli("lun", "bind", iqn, str(store), "--lun", "2").rc == 0
    saved = tmp_path / "tgt-conf.d" / "one-iscsi" / f"{iqn}.conf"
    assert f"<backing-store {store}>" in saved.read_text()
    assert cli("lun", "unbind", "1", "--lun", "2").rc == 0
    assert json.loads(cli("lun", "list", "--json").out) == []
    assert str(store) not in saved.read_text()
    again = cli("lun", "unbind", "1", "--lun", "2")
    assert (again.rc, again.err) == (1, f"one-iscsi: error: target {iqn} (TID 1) on localhost has no LUN 2\n")


def test_lun_unbind_with_a_session_needs_force(tgtd, cli, tmp_path):
    """A live session is held by qemu-nbd reading the LUN through libiscsi."""
    iqn = f"{BASE}.lv-one-7"
    store = tmp_path / "lv-one-7.img"
    subprocess.run(["truncate", "-s", "8M", str(store)], check=True)
    assert cli("target", "new", iqn).rc == 0
    assert cli("target", "acl", "add", iqn, "127.0.0.1").rc == 0
    assert cli("lun", "bind", iqn, str(store)).rc == 0
    with session_on(tgtd, iqn):
        [initiator] = json.loads(cli("target", "show", iqn, "--json").out)["initiators"]
        refused = cli("lun", "unbind", iqn)
        assert (refused.rc, refused.err) == (1, f"one-iscsi: error: target {iqn} (TID 1) on localhost has sessions "
                                                f"({initiator}): log them out first, or use --force\n")
        assert len(json.loads(cli("lun", "list", "--json").out)) == 1
        assert cli("lun", "unbind", iqn, "--force").rc == 0
        assert json.loads(cli("lun", "list", "--json").out) == []


LOGGED_TGTADM = """#!/bin/sh
echo "$*" >> {log}
exec tgtadm -C {control} "$@"
"""
LISTING = "--lld iscsi --op show --mode target"  # every target: what the lookups of one-iscsi's targets avoid


@pytest.fixture
def tgtadm_log(tgtd, tmp_path, monkeypatch):
    """tgtadm logs its arguments, a line each: returns the lines logged since the last call."""
    log, wrapper = tmp_path / "tgtadm.log", tmp_path / "tgtadm"
    wrapper.write_text(LOGGED_TGTADM.format(log=log, control=tgtd.control))
    wrapper.chmod(0o755)
    monkeypatch.setenv("ONE_ISCSI_TGTADM", str(wrapper))

    def since() -> list[str]:
        lines = log.read_text().splitlines() if log.exists() else []
        log.write_text("")
        return lines
    return since


def test_targets_of_one_iscsi_are_made_found_and_deleted_without_listing_every_target(
        tgtd, cli, tgtadm_log, tmp_path):
    iqn, image = f"{BASE}.lv-one-3", random_image(tmp_path / "img.raw", 1024 * 1024)
    assert cli("target", "new", iqn).out == "1\n"  # no hint yet: one listing, then none
    assert tgtadm_log().count(LISTING) == 1
    assert cli("target", "new", f"{BASE}.lv-one-4").out == "2\n"
    assert cli("target", "tid", iqn).out == "1\n"
    assert cli("target", "new", iqn).out == "1\n"  # kept
    assert cli("target", "delete", iqn).rc == 0
    ds = {"BACKEND": "file", "POOL_DIR": str(tmp_path / "pool"), "HOST": "localhost"}
    for action, call in (("cp", {"PATH": str(image)}), ("rm", {"SOURCE": f"{BASE}.lv-one-5"})):
        done = remote("datastore", action, action_xml(call, {}, ds), "5")
        assert done.returncode == 0, done.stderr
    logged = tgtadm_log()
    assert LISTING not in logged
    assert "--lld iscsi --op show --mode target --tid 1" in logged  # target tid, new, delete: by the mark
    assert "--lld iscsi --op delete --mode target --tid 3" in logged  # image rm of the target cp made
    assert tgtd.target_ids() == [2]


def test_a_target_without_a_recorded_tid_or_mark_is_found_in_the_listing_and_marked_again(tgtd, cli, tgtadm_log,
                                                                                        tmp_path):
    """Another's target, a file of an earlier version, a target tgt's start-up made anew: exact names all the same."""
    foreign, old, again = "iqn.2001-04.com.example:storage.disk1", f"{BASE}.lv-one-5", f"{BASE}.lv-one-50"
    assert tgtd.tgtadm("--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "9", "-T", foreign).returncode == 0
    assert cli("target", "new", "--tid", "4", old).rc == 0
    assert cli("target", "new", "--tid", "5", again).rc == 0
    saved = tmp_path / "tgt-conf.d" / "one-iscsi" / f"{old}.conf"
    saved.write_text(tgtconf.render(tgtconf.parse(saved.read_text()).with_tid(0)))  # as an earlier version wrote it
    for args in (["--op", "delete", "--mode", "target", "--tid", "5"],
                 ["--op", "new", "--mode", "target", "--tid", "5", "-T", again]):  # as tgt's start-up makes it
        assert tgtd.tgtadm("--lld", "iscsi", *args).returncode == 0
    tgtadm_log()
    assert [cli("target", "tid", name).out for name in (foreign, old, again)] == ["9\n", "4\n", "5\n"]
    assert tgtadm_log().count(LISTING) == 3
    assert cli("target", "tid", again).out == "5\n"  # marked again by the lookup: no listing now
    assert tgtadm_log() == ["--lld iscsi --op show --mode target --tid 5"]
    assert cli("target", "new", foreign).out == "9\n"  # the name tgtd has, whatever TID the maker tried
    assert cli("target", "delete", old).rc == 0 and cli("target", "delete", "5").rc == 0
    assert tgtd.target_ids() == [9]
