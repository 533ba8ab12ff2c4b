"""status and gc (inventory.py, cli/status.py) against a recording Runner:
the join of tgtd's targets, the saved files and the volumes, the flags and
states, the exact commands each runs on the target server, in how many
sessions, and gc's decisions (removed, skipped in use or busy, changed
meanwhile, failed) for each kind of orphan.

One scenario serves most tests (file backend in /srv/pool, HOST tgt1):
lv-one-1 a healthy image; lv-one-2 a volume alone (a cp killed before its
target); lv-one-3 a saved file alone; lv-one-4 a target whose volume is
gone; lv-one-5 the same, in use; lv-one-6 volume and saved file without
target (tgtd lost it: to restore); a target of another name and one of
another volume group, neither ours."""
import ast
import json

import pytest
import typer
from support.expected import BASE, CONF_DIR, SHOW, delete_target, listing

from oneiscsi import inventory, lvm, storage, tgt, tgtconf
from oneiscsi.cli import status as status_cli
from oneiscsi.errors import OneIscsiError
from oneiscsi.inventory import Facts
from oneiscsi.units import MIB
from support.recording import Recorder, make_config

POOL = "/srv/pool/vg-one"
LOCK = "/run/lock/one-iscsi.lock"
NODE1 = "iqn.1993-08.org.debian:01:node1"
FOREIGN = "iqn.2000-01.com.example:disk1"
KEYS = {"HOST": "tgt1", "BACKEND": "file", "POOL_DIR": "/srv/pool", "CONF_DIR": CONF_DIR}


def iqn(lv: str, vg: str = "vg-one") -> str:
    return f"{BASE}:tgt1.{vg}.{lv}"


def device(lv: str) -> str:
    return f"{POOL}/{lv}"


def conf(target: str) -> str:
    return f"{CONF_DIR}/{target}.conf"


OTHER_VG = iqn("lv-one-7", vg="vg-two")
TARGETS = ((1, iqn("lv-one-1"), (device("lv-one-1"),)), (2, iqn("lv-one-4"), (device("lv-one-4"),)),
           (3, iqn("lv-one-5"), (device("lv-one-5"),), (NODE1,)), (4, FOREIGN, ("/srv/other/disk1",)),
           (5, OTHER_VG, ("/dev/vg-two/lv-one-7",)))
SAVED = {iqn("lv-one-1"): (device("lv-one-1"),), iqn("lv-one-3"): (device("lv-one-3"),),
         iqn("lv-one-4"): (device("lv-one-4"),), iqn("lv-one-5"): (device("lv-one-5"),),
         iqn("lv-one-6"): (device("lv-one-6"),), OTHER_VG: ("/dev/vg-two/lv-one-7",)}
TIDS = {iqn("lv-one-1"): 1, iqn("lv-one-4"): 2, iqn("lv-one-5"): 3, OTHER_VG: 5,  # recorded in the saved files
        iqn("lv-one-3"): 6, iqn("lv-one-6"): 7}
VOLUMES = {"lv-one-1": 8 * MIB, "lv-one-2": 5 * MIB + 1, "lv-one-6": MIB, "notes.txt": 10}
EXISTING = (device("lv-one-1"), device("lv-one-6"))


def scenario(targets=TARGETS, saved=SAVED, volumes=VOLUMES, existing=EXISTING, dry_run=False, tids=TIDS,
             **keys) -> Recorder:
    """A recorder answering as a target server with these targets (as
    listing() takes them), saved files ({IQN: backing stores}, recording
    the TIDs of tids {IQN: TID}, or a text), pool files ({name: bytes}) and
    existing paths. The saved files are listed with their sizes and read
    by one cat (or one by one)."""
    recorder = Recorder(make_config(**{**KEYS, **keys}), dry_run=dry_run)
    recorder.answer(*SHOW, out=listing(*targets))
    texts = {target: stores if isinstance(stores, str) else
             tgtconf.render(tgtconf.TargetSpec(target, stores, tid=tids.get(target, 0)))
             for target, stores in sorted(saved.items())}
    recorder.answer("find", CONF_DIR, out="".join(f"{len(text)} {name}.conf\n" for name, text in texts.items()))
    for target, text in texts.items():
        recorder.answer("cat", "--", conf(target), out=text)
    recorder.answer("cat", "--", *map(conf, texts), out="".join(texts.values()))  # first: it holds the words above
    recorder.answer("find", "-H", POOL, out="".join(f"{size} {name}\n" for name, size in volumes.items()))
    recorder.answer("stat", "-L", out="".join(f"{path}\n" for path in existing), rc=1)
    return recorder


def server(recorder: Recorder):
    return recorder.runner("tgt1")


def by_name(entries) -> dict:
    return {entry.name: entry for entry in entries}


# the builders

def test_volume_listings_and_their_parsers():
    lvs = lvm.volumes("vg-one")
    assert lvs.argv == ("lvs", "--noheadings", "--units", "b", "--nosuffix", "--separator", ":",
                        "-o", "lv_name,lv_size", "vg-one")
    assert lvs.query and lvs.privileged
    assert storage.list_volumes(make_config()) == lvs
    assert storage.parse_volumes("lvm", "  lv-one-7:8388608\n  other:1048576\n") == {"lv-one-7": 8 * MIB,
                                                                                        "other": MIB}
    files = storage.list_volumes(make_config(BACKEND="file", POOL_DIR="/srv/pool"))
    assert files.argv == ("find", "-H", POOL, "-maxdepth", "1", "-type", "f", "-printf", "%s %f\\n")
    assert files.query and not files.privileged
    assert storage.parse_volumes("file", "8388608 lv-one-7\n3 a name\n") == {"lv-one-7": 8 * MIB, "a name": 3}


def test_existing_prints_the_paths_that_exist_and_a_missing_one_is_no_failure():
    cmd = storage.existing(["/dev/vg-one/lv-one-7", "/srv/x"])
    assert cmd.argv == ("stat", "-L", "--printf", "%n\\n", "--", "/dev/vg-one/lv-one-7", "/srv/x")
    assert cmd.query and cmd.accept == {1}


def test_image_volume_names_are_those_of_images_and_private_copies():
    assert [storage.is_image_volume(name) for name in ("lv-one-7", "lv-one-12-0", "lv-one-", "lv-one-7-x",
                                                      "lv-one-7.tmp", "data", "lv-one-1-2-3")] == [
        True, True, False, False, False, False, False]


def test_lock_free_takes_nothing_and_tells_a_held_lock_apart():
    cmd = inventory.lock_free(f"{LOCK}.vg-one.lv-one-2")
    assert cmd.argv == ("flock", "--nonblock", "--conflict-exit-code", "75", f"{LOCK}.vg-one.lv-one-2", "true")
    assert cmd.query and not cmd.privileged


# the join

def test_status_joins_targets_saved_files_and_volumes_with_states_and_flags():
    entries = inventory.status(make_config(**KEYS), server(scenario()))
    assert [(entry.name, entry.state, entry.flags, entry.orphan) for entry in entries] == [
        ("lv-one-1", "ok", (), None),
        ("lv-one-2", "orphan", ("no-target",), "volume"),
        ("lv-one-3", "orphan", ("not-in-tgtd", "store-missing", "no-volume"), "saved file"),
        ("lv-one-4", "orphan", ("store-missing", "no-volume"), "target"),
        ("lv-one-5", "orphan", ("store-missing", "no-volume"), "target"),
        ("lv-one-6", "incomplete", ("no-target", "not-in-tgtd"), None),
        (FOREIGN, "foreign", ("store-missing",), None),
        (OTHER_VG, "foreign", ("store-missing",), None),
    ]


def test_status_reads_everything_in_one_session_without_a_lock():
    recorder = scenario()
    inventory.status(recorder.cfg, server(recorder))
    assert recorder.sessions == [("tgt1", False)] and recorder.locks == []
    stores = sorted({*(store for target in TARGETS for store in target[2]), device("lv-one-3"), device("lv-one-6")})
    assert recorder.argvs("tgt1") == [
        SHOW,
        ["find", CONF_DIR, "-maxdepth", "1", "-name", "*.conf", "-printf", "%s %f\\n"],
        ["cat", "--", *sorted(map(conf, SAVED))],  # every saved file, in one cat
        ["find", "-H", POOL, "-maxdepth", "1", "-type", "f", "-printf", "%s %f\\n"],
        ["stat", "-L", "--printf", "%n\\n", "--", *stores],
    ]


def test_an_entry_as_json_has_one_stable_shape():
    entries = by_name(inventory.status(make_config(**KEYS), server(scenario())))
    assert entries["lv-one-1"].as_dict() == {
        "name": "lv-one-1", "iqn": iqn("lv-one-1"), "ours": True, "state": "ok", "flags": [],
        "volume": device("lv-one-1"), "size_mib": 8, "tid": 1, "backing_stores": [device("lv-one-1")],
        "missing_backing_stores": [], "exported_by": [iqn("lv-one-1")], "saved_file": conf(iqn("lv-one-1")),
        "recorded_tid": 1, "sessions": []}
    assert entries["lv-one-5"].as_dict()["sessions"] == [{"initiator": NODE1, "addresses": ["10.0.0.5"]}]
    volume_only = entries["lv-one-2"].as_dict()
    assert (volume_only["size_mib"], volume_only["tid"], volume_only["saved_file"]) == (6, None, None)
    assert [sorted(entry.as_dict()) for entry in entries.values()] == [sorted(volume_only)] * len(entries)


def facts(targets=(), saved=None, volumes=None, saved_stores=None, existing=()) -> Facts:
    return Facts(tuple(tgt.parse_show(listing(*targets))), saved or {}, volumes or {}, saved_stores or {},
                 frozenset(existing))


def entries_of(cfg=None, **given) -> dict:
    return by_name(inventory.entries(cfg or make_config(**KEYS), facts(**given)))


def test_a_volume_another_target_exports_is_no_orphan():
    found = entries_of(targets=[(4, FOREIGN, (device("lv-one-2"),))], volumes={"lv-one-2": MIB},
                       existing=[device("lv-one-2")])
    assert (found["lv-one-2"].exported_by, found["lv-one-2"].orphan) == ((FOREIGN,), None)
    assert found["lv-one-2"].state == "incomplete"


def test_a_saved_file_or_target_whose_data_still_exists_elsewhere_is_no_orphan():
    """A target or saved file naming a backing store that exists, though the
    pool has no volume of its name (POOL_DIR set wrong, say): kept."""
    elsewhere = "/srv/old-pool/vg-one/lv-one-3"
    found = entries_of(targets=[(2, iqn("lv-one-4"), (elsewhere,))], saved={iqn("lv-one-3"): conf(iqn("lv-one-3"))},
                       saved_stores={iqn("lv-one-3"): (elsewhere,)}, existing=[elsewhere])
    assert [(entry.state, entry.orphan) for entry in found.values()] == [("incomplete", None)] * 2


def test_an_unreadable_saved_file_is_flagged_and_kept():
    found = entries_of(saved={iqn("lv-one-3"): conf(iqn("lv-one-3"))}, saved_stores={iqn("lv-one-3"): None})
    entry = found["lv-one-3"]
    assert (entry.state, entry.flags, entry.orphan) == ("incomplete", ("not-in-tgtd", "no-volume", "unreadable"),
                                                         None)
    assert entry.as_dict()["backing_stores"] == []


def test_a_saved_file_recording_a_tid_tgtd_has_for_another_target_or_not_for_its_own_is_flagged():
    """What a stale TID looks like: after a restart that gave the targets other TIDs, or by hand."""
    recorder = scenario(tids={**TIDS, iqn("lv-one-4"): 5, iqn("lv-one-5"): 9, iqn("lv-one-3"): 1,
                              iqn("lv-one-6"): 8})
    entries = by_name(inventory.status(recorder.cfg, server(recorder)))
    assert {name: (entry.recorded_tid, "stale-tid" in entry.flags) for name, entry in entries.items()
            if entry.recorded_tid} == {
        "lv-one-1": (1, False),  # its own TID
        "lv-one-4": (5, True),   # its target has TID 2; 5 is another's
        "lv-one-5": (9, True),   # its target has TID 3; 9 is nobody's
        "lv-one-3": (1, True),   # no target; its TID is lv-one-1's: restore cannot make it there
        "lv-one-6": (8, False),  # no target; its TID is free: restore makes it there
        OTHER_VG: (5, False),
    }
    assert entries["lv-one-4"].as_dict()["recorded_tid"] == 5


def test_a_saved_file_of_an_earlier_version_which_records_no_tid_is_flagged():
    recorder = scenario(tids={**TIDS, iqn("lv-one-1"): 0, iqn("lv-one-6"): 0})
    entries = by_name(inventory.status(recorder.cfg, server(recorder)))
    assert entries["lv-one-1"].flags == ("no-tid",) and entries["lv-one-1"].as_dict()["recorded_tid"] is None
    assert entries["lv-one-6"].flags == ("no-target", "not-in-tgtd", "no-tid")
    assert entries["lv-one-6"].state == "incomplete" and entries["lv-one-1"].orphan is None


def test_a_saved_file_of_a_target_tgtd_has_that_one_iscsi_cannot_read_is_flagged():
    unreadable = f"<target {iqn('lv-one-1')}>\n    write-cache off\n</target>\n"
    recorder = scenario(saved={**SAVED, iqn("lv-one-1"): unreadable})
    entry = by_name(inventory.status(recorder.cfg, server(recorder)))["lv-one-1"]
    assert (entry.state, entry.flags, entry.backing_stores) == ("incomplete", ("unreadable",), (device("lv-one-1"),))


def test_saved_files_changed_between_their_listing_and_their_reading_are_read_one_by_one():
    recorder = scenario()
    recorder.answer("find", CONF_DIR, out="".join(f"1 {name}.conf\n" for name in sorted(SAVED)))
    entries = inventory.status(recorder.cfg, server(recorder))
    assert [entry.state for entry in entries] == [entry.state for entry in inventory.status(recorder.cfg,
                                                                                            server(scenario()))]
    assert recorder.argvs()[3:9] == [["cat", "--", conf(target)] for target in sorted(SAVED)]


def test_a_target_without_lun_nor_volume_is_an_orphan_and_with_its_volume_is_not():
    saved = {iqn("lv-one-4"): conf(iqn("lv-one-4"))}
    empty = entries_of(targets=[(2, iqn("lv-one-4"))], saved=saved)["lv-one-4"]
    assert (empty.flags, empty.orphan) == (("no-lun", "no-volume"), "target")
    made = entries_of(targets=[(2, iqn("lv-one-4"))], saved=saved, volumes={"lv-one-4": MIB})["lv-one-4"]
    assert (made.flags, made.orphan, made.state) == (("no-lun",), None, "incomplete")


def test_a_target_of_our_naming_without_saved_file_is_not_removed():
    """Not made by one-iscsi (or a cp killed before it saved it): gc leaves it."""
    entry = entries_of(targets=[(2, iqn("lv-one-4"), (device("lv-one-4"),))])["lv-one-4"]
    assert (entry.state, entry.flags, entry.orphan) == ("incomplete", ("not-saved", "store-missing", "no-volume"),
                                                         None)


def test_a_target_whose_volume_exists_but_not_its_device_is_kept():
    """An LV that is not active: its device is missing, its data is not."""
    found = entries_of(targets=[(1, iqn("lv-one-1"), ("/dev/vg-one/lv-one-1",))], volumes={"lv-one-1": MIB},
                       saved={iqn("lv-one-1"): conf(iqn("lv-one-1"))}, cfg=make_config(HOST="tgt1"))
    entry = found["lv-one-1"]
    assert (entry.volume, entry.flags, entry.orphan) == ("/dev/vg-one/lv-one-1", ("store-missing",), None)


@pytest.mark.parametrize("target", [
    "iqn.2012-02.org.opennebula:tgt2.vg-one.lv-one-4",   # another target server's name
    "iqn.2020-01.com.example:tgt1.vg-one.lv-one-4",      # another BASE_IQN
    iqn("lv-one-4", vg="vg-two"),                         # another volume group
    iqn("scratch"),                                      # not an image's volume
    "iqn.2012-02.org.opennebula:nodots",                 # not of the form BASE:HOST.VG.LV
])
def test_what_is_not_of_this_configuration_is_foreign_and_never_an_orphan(target):
    found = entries_of(targets=[(2, target, ("/gone",))], saved={target: conf(target)},
                       saved_stores={target: ("/gone",)})
    assert [(entry.name, entry.ours, entry.state, entry.orphan) for entry in found.values()] == [
        (target, False, "foreign", None)]


def test_entries_come_in_numeric_order_ours_first():
    found = entries_of(targets=[(1, FOREIGN)], volumes={"lv-one-10": MIB, "lv-one-9-1": MIB, "lv-one-9": MIB,
                                                        "lv-one-2": MIB})
    assert list(found) == ["lv-one-2", "lv-one-9", "lv-one-9-1", "lv-one-10", FOREIGN]


def test_lvm_volumes_are_the_lvs_of_the_group_named_as_images():
    recorder = scenario(targets=(), saved={}, BACKEND="lvm")
    recorder.answer("lvs", out="  lv-one-2:6291456\n  swap:1048576\n")
    entries = inventory.status(recorder.cfg, server(recorder))
    assert [(entry.name, entry.volume, entry.size_mib, entry.orphan) for entry in entries] == [
        ("lv-one-2", "/dev/vg-one/lv-one-2", 6, "volume")]
    assert ["lvs", "--noheadings", "--units", "b", "--nosuffix", "--separator", ":", "-o", "lv_name,lv_size",
            "vg-one"] in recorder.argvs()


def test_a_missing_pool_directory_or_conf_dir_is_nothing_there():
    recorder = scenario()
    recorder.fail("find", "-H", POOL, stderr=f"find: '{POOL}': No such file or directory")
    recorder.fail("find", CONF_DIR, stderr=f"find: '{CONF_DIR}': No such file or directory")
    entries = inventory.status(recorder.cfg, server(recorder))
    assert [(entry.name, entry.flags) for entry in entries if entry.ours] == [
        ("lv-one-1", ("not-saved", "no-volume")), ("lv-one-4", ("not-saved", "store-missing", "no-volume")),
        ("lv-one-5", ("not-saved", "store-missing", "no-volume"))]


def test_a_missing_volume_group_is_an_error_naming_it():
    recorder = scenario(BACKEND="lvm")
    recorder.fail("lvs", rc=5, stderr='  Volume group "vg-one" not found')
    with pytest.raises(OneIscsiError, match="volume group vg-one does not exist on tgt1"):
        inventory.status(recorder.cfg, server(recorder))


# gc

def gc(recorder: Recorder, remove: bool):
    return inventory.gc(recorder.cfg, server(recorder), remove)


def outcomes_of(outcomes) -> list[tuple]:
    return [(outcome.entry.name, outcome.action, outcome.why) for outcome in outcomes]


def probe(lv: str) -> list[str]:
    return ["flock", "--nonblock", "--conflict-exit-code", "75", f"{LOCK}.vg-one.{lv}", "true"]


def changes(recorder: Recorder) -> list[list[str]]:
    """The commands run that change something."""
    return [argv for argv in recorder.argvs() if argv[0] in ("rm", "lvremove")
            or argv[:4] == ["tgtadm", "--lld", "iscsi", "--op"] and argv[4] == "delete"]


def test_gc_without_yes_says_what_it_would_remove_and_removes_nothing():
    recorder = scenario()
    assert outcomes_of(gc(recorder, remove=False)) == [
        ("lv-one-2", "would remove", ""), ("lv-one-3", "would remove", ""), ("lv-one-4", "would remove", ""),
        ("lv-one-5", "skipped", f"in use by {NODE1}")]
    assert changes(recorder) == []
    assert [argv for argv in recorder.argvs() if argv[0] == "flock"] == [probe("lv-one-2"), probe("lv-one-3"),
                                                                         probe("lv-one-4")]
    assert recorder.sessions == [("tgt1", False)] and recorder.locks == []


def test_gc_removes_each_orphan_under_its_lock_through_the_existing_removals():
    recorder = scenario()
    outcomes = gc(recorder, remove=True)
    assert outcomes_of(outcomes) == [
        ("lv-one-2", "removed", ""), ("lv-one-3", "removed", ""), ("lv-one-4", "removed", ""),
        ("lv-one-5", "skipped", f"in use by {NODE1}")]
    assert changes(recorder) == [
        ["rm", "-f", device("lv-one-2")],                          # Volume.remove
        ["rm", "-f", conf(iqn("lv-one-3"))],                       # TargetServer.forget
        delete_target(2), ["rm", "-f", conf(iqn("lv-one-4"))],     # TargetServer.delete_and_forget, no --force
    ]
    # the inventory, then a session per removal holding the image's lock
    assert recorder.sessions == [("tgt1", False)] * 4
    assert recorder.locks == [("hold", "tgt1", f"{LOCK}.vg-one.{lv}") for lv in ("lv-one-2", "lv-one-3", "lv-one-4")]
    assert [outcome.what for outcome in outcomes] == [
        f"volume {device('lv-one-2')}", f"saved file {conf(iqn('lv-one-3'))}",
        f"target {iqn('lv-one-4')} (TID 2) and its saved file", f"target {iqn('lv-one-5')} (TID 3) and its saved file"]


def test_gc_looks_again_under_the_lock_and_leaves_what_changed_meanwhile():
    """lv-one-2's cp went on and made its target while gc waited for the lock."""
    recorder = scenario()
    after = listing(*TARGETS, (6, iqn("lv-one-2"), (device("lv-one-2"),)))
    recorder.answer("flock", f"{LOCK}.vg-one.lv-one-2", then=lambda: recorder.answer(*SHOW, out=after))
    assert outcomes_of(gc(recorder, remove=True))[0] == ("lv-one-2", "skipped", "changed meanwhile: left as it is")
    assert ["rm", "-f", device("lv-one-2")] not in changes(recorder)


def test_gc_skips_an_image_whose_lock_is_held_without_waiting():
    recorder = scenario()
    recorder.fail("flock", f"{LOCK}.vg-one.lv-one-3", rc=75, stderr="")
    outcomes = outcomes_of(gc(recorder, remove=True))
    assert outcomes[1] == ("lv-one-3", "skipped", f"another one-iscsi works on it (holds {LOCK}.vg-one.lv-one-3)")
    assert ["rm", "-f", conf(iqn("lv-one-3"))] not in changes(recorder)
    assert ("hold", "tgt1", f"{LOCK}.vg-one.lv-one-3") not in recorder.locks
    assert [action for _, action, _ in outcomes].count("removed") == 2


def test_a_target_that_got_a_session_meanwhile_is_skipped():
    recorder = scenario()
    in_use = listing(*TARGETS[:1], (2, iqn("lv-one-4"), (device("lv-one-4"),), (NODE1,)), *TARGETS[2:])
    recorder.answer("flock", f"{LOCK}.vg-one.lv-one-4", then=lambda: recorder.answer(*SHOW, out=in_use))
    assert outcomes_of(gc(recorder, remove=True))[2] == ("lv-one-4", "skipped", f"in use by {NODE1}")
    assert delete_target(2) not in changes(recorder)


def test_a_failed_removal_is_reported_and_the_others_go_on():
    recorder = scenario()
    recorder.fail("rm", "-f", device("lv-one-2"), stderr="rm: cannot remove: Read-only file system")
    outcomes = outcomes_of(gc(recorder, remove=True))
    assert outcomes[0] == ("lv-one-2", "failed", "rm failed on tgt1 (exit 1): rm: cannot remove: Read-only file system")
    assert [action for _, action, _ in outcomes[1:]] == ["removed", "removed", "skipped"]


def test_a_lock_taken_in_the_moment_after_it_was_seen_free_is_a_failure_not_a_wait(monkeypatch):
    recorder = scenario()
    tgt1 = server(recorder)
    opened = tgt1.session

    def session(lock=False, hold=()):
        if hold:
            raise OneIscsiError(f"lock {hold[0]} on tgt1 is held by another one-iscsi for more than 2 s "
                                          "(LOCK_TIMEOUT)")
        return opened(lock, hold)

    monkeypatch.setattr(tgt1, "session", session)
    outcomes = inventory.gc(recorder.cfg, tgt1, remove=True)
    assert [outcome.action for outcome in outcomes] == ["failed"] * 3 + ["skipped"]
    assert "is held by another one-iscsi for more than 2 s" in outcomes[0].why
    assert changes(recorder) == []


def test_gc_under_dry_run_runs_only_queries_and_says_would_remove():
    recorder = scenario(dry_run=True)
    assert [action for _, action, _ in outcomes_of(gc(recorder, remove=True))] == ["would remove"] * 3 + ["skipped"]
    assert changes(recorder) == []


def test_gc_never_touches_what_is_not_ours():
    recorder = scenario(targets=TARGETS[3:], saved={OTHER_VG: ("/dev/vg-two/lv-one-7",)}, volumes={"notes.txt": 1},
                        existing=())
    assert gc(recorder, remove=True) == []
    assert changes(recorder) == [] and [argv for argv in recorder.argvs() if argv[0] == "flock"] == []


def test_gc_config_waits_briefly_for_a_lock():
    assert inventory.gc_config(make_config(LOCK_TIMEOUT="60")).lock_timeout == inventory.LOCK_WAIT
    assert inventory.gc_config(make_config(LOCK_TIMEOUT="0.5")).lock_timeout == 0.5
    assert inventory.gc_config(make_config(HOST="tgt9")).host == "tgt9"


def test_an_outcome_as_json():
    recorder = scenario()
    removed, _, target, skipped = gc(recorder, remove=True)
    assert removed.as_dict() == {"name": "lv-one-2", "iqn": iqn("lv-one-2"), "orphan": "volume",
                                 "what": f"volume {device('lv-one-2')}", "reason": "no target, no saved file",
                                 "action": "removed", "why": ""}
    assert (target.as_dict()["orphan"], skipped.as_dict()["why"]) == ("target", f"in use by {NODE1}")


# the commands, on a small app of their own

@pytest.fixture
def command_line(monkeypatch, capsys):
    """Runs status/gc of cli/status.py against a scenario; returns (exit status, stdout, stderr)."""
    for key, value in KEYS.items():
        monkeypatch.setenv(f"ONE_ISCSI_{key}", value)

    def run(recorder: Recorder, *args: str):
        monkeypatch.setattr(status_cli, "target_server", lambda ctx, cfg=None: server(recorder))
        capsys.readouterr()
        rc = typer.main.get_command(status_cli.app).main(list(args), standalone_mode=False)
        out, err = capsys.readouterr()
        return rc or 0, out, err
    return run


def test_status_command_prints_a_table_and_a_summary(command_line):
    rc, out, err = command_line(scenario(), "status")
    lines = out.splitlines()
    assert rc == 0
    assert lines[0].split() == ["NAME", "TID", "MIB", "SESSIONS", "STATE", "FLAGS"]
    assert lines[2].split() == ["lv-one-1", "1", "8", "0", "ok", "-"]
    assert lines[3].split() == ["lv-one-2", "-", "6", "0", "orphan", "no-target"]
    assert lines[6].split() == ["lv-one-5", "3", "-", "1", "orphan", "store-missing,no-volume"]
    assert err == ("1 ok, 4 orphan, 1 incomplete, 2 foreign\n`one-iscsi gc` shows what it would remove\n"
                   "`one-iscsi target restore` brings back the saved targets tgtd lacks\n")


def test_status_command_json_is_the_entries(command_line):
    rc, out, _ = command_line(scenario(), "status", "--json")
    data = json.loads(out)
    assert rc == 0 and [item["name"] for item in data][:3] == ["lv-one-1", "lv-one-2", "lv-one-3"]
    assert data[0] == by_name(inventory.status(make_config(**KEYS), server(scenario())))["lv-one-1"].as_dict()


def test_gc_command_dry_run_by_default(command_line):
    recorder = scenario()
    rc, out, err = command_line(recorder, "gc")
    assert rc == 0 and changes(recorder) == []
    assert out == (f"would remove volume {device('lv-one-2')} (no target, no saved file)\n"
                   f"would remove saved file {conf(iqn('lv-one-3'))} (no target, no volume, no backing store)\n"
                   f"would remove target {iqn('lv-one-4')} (TID 2) and its saved file "
                   "(no volume, no backing store)\n")
    assert err == (f"skipped target {iqn('lv-one-5')} (TID 3) and its saved file: in use by {NODE1}\n"
                   "3 to remove, 1 skipped\nrun `one-iscsi gc --yes` to remove them\n")


def test_gc_command_yes_removes_and_a_failure_is_exit_1(command_line):
    recorder = scenario()
    recorder.fail("rm", "-f", conf(iqn("lv-one-3")), stderr="rm: cannot remove: Permission denied")
    rc, out, err = command_line(recorder, "gc", "--yes")
    assert rc == 1
    assert out.splitlines()[0] == f"removed volume {device('lv-one-2')} (no target, no saved file)"
    assert (f"not removed: saved file {conf(iqn('lv-one-3'))}: rm failed on tgt1 (exit 1): rm: cannot remove: "
            "Permission denied\n") in err
    assert err.endswith("2 removed, 1 failed, 1 skipped\n")


def test_gc_command_json_and_nothing_to_remove(command_line):
    rc, out, err = command_line(scenario(targets=TARGETS[:1], saved={}, volumes={"lv-one-1": MIB}), "gc", "--json")
    assert (rc, json.loads(out), err) == (0, [], "nothing to remove\n")
    rc, out, _ = command_line(scenario(), "gc", "--json", "--yes")
    assert rc == 0 and [item["action"] for item in json.loads(out)] == ["removed"] * 3 + ["skipped"]


def test_gc_command_waits_briefly_for_locks(command_line, monkeypatch):
    seen = []
    monkeypatch.setenv("ONE_ISCSI_LOCK_TIMEOUT", "60")
    monkeypatch.setattr(status_cli, "target_server", lambda ctx, cfg=None: seen.append(cfg.lock_timeout))
    monkeypatch.setattr(inventory, "gc", lambda cfg, server, remove: [])
    typer.main.get_command(status_cli.app).main(["gc"], standalone_mode=False)
    assert seen == [inventory.LOCK_WAIT]


# on LIO (TARGET=lio): one program run for the targets and the saved configuration

def lio_scenario(dry_run=False) -> Recorder:
    """LIO with lv-one-1 exported and saved, a saved entry of lv-one-3
    without target, data or volume, and the pool's volumes lv-one-1 and
    lv-one-2 (a cp killed before its target: no target, nothing saved)."""
    recorder = Recorder(make_config(**KEYS, TARGET="lio"), dry_run=dry_run)
    described = {"iqn": iqn("lv-one-1"), "acl": ["ALL"], "chap_user": "", "sessions": [],
                 "luns": [{"lun": 1, "path": device("lv-one-1"), "size": 8 * MIB, "plugin": "fileio"}]}
    inventory_answer = {"targets": [described], "saved": {iqn("lv-one-1"): [device("lv-one-1")],
                                                          iqn("lv-one-3"): [device("lv-one-3")]}}
    recorder.answer("python3", "-", out=json.dumps({"deleted": False, "target": None}), stdin='"op": "delete"')
    recorder.answer("python3", "-", out=json.dumps(inventory_answer), stdin='"op": "inventory"')
    recorder.answer("find", "-H", POOL, out=f"{8 * MIB} lv-one-1\n{MIB} lv-one-2\n")
    recorder.answer("stat", "-L", out=f"{device('lv-one-1')}\n", rc=1)
    return recorder


def lio_ops(recorder: Recorder) -> list[tuple]:
    calls = [ast.parse(cmd.input.rstrip().splitlines()[-1]).body[0].value.args[0].value
             for cmd in recorder.commands if cmd.argv[:2] == ("python3", "-")]
    return [(request["op"], request.get("iqn"), request.get("objects")) for request in map(json.loads, calls)]


def test_status_on_lio_joins_lios_targets_its_saved_entries_and_the_volumes():
    recorder = lio_scenario()
    found = by_name(inventory.status(recorder.cfg, server(recorder)))
    assert {name: (entry.state, entry.flags) for name, entry in found.items()} == {
        "lv-one-1": ("ok", ()), "lv-one-2": ("orphan", ("no-target",)),
        "lv-one-3": ("orphan", ("not-in-tgtd", "store-missing", "no-volume"))}
    assert found["lv-one-1"].as_dict()["tid"] is None and found["lv-one-3"].saved_file == inventory.lio.SAVE_FILE
    assert lio_ops(recorder) == [("inventory", None, None)]


def test_gc_on_lio_removes_a_volume_with_what_lio_may_hold_of_it_and_a_saved_entry():
    recorder = lio_scenario()
    outcomes = inventory.gc(recorder.cfg, server(recorder), remove=True)
    assert [(outcome.what, outcome.action) for outcome in outcomes] == [
        (f"volume {device('lv-one-2')}", "removed"),
        (f"saved entry of {iqn('lv-one-3')} in {inventory.lio.SAVE_FILE}", "removed")]
    assert [op for op in lio_ops(recorder) if op[0] == "delete"] == [
        ("delete", iqn("lv-one-2"), [["fileio", "vg-one.lv-one-2"]]), ("delete", iqn("lv-one-3"), [])]
    assert ["rm", "-f", device("lv-one-2")] in recorder.argvs()
