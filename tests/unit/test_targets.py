"""TargetServer against a recording session (no process is started): the
exact tgtadm and config-file commands of each operation, TID allocation and
its retry, deleting, saving and restoring targets, and the changes by hand
(LUNs, ACL, CHAP), each saved, taken back on failure, and refused on a
target one-iscsi did not make unless forced.

The expected commands and listings are in support/expected.py."""
import pytest

from oneiscsi import tgtconf
from oneiscsi.errors import InvalidInput, NotFound, OneIscsiError
from oneiscsi.targets import NEW_TARGET_ATTEMPTS, TargetServer
from oneiscsi.tgtconf import TargetSpec
from support.expected import (ALLOWED, BASE, CHAP, CONF_DIR, HINT, INCLUDE, IQN, LISTED, LISTED_50, PARAMETERS,
                              READ_HINT, SHOW, SHOWN, allowed, bind, cat, chap, conf, delete_target, forget, listing,
                              make_target, mark_all, marked, new_lun, no_file, on_file, saved, show_conn, show_tid, tgtadm,
                              writes)
from support.recording import Recorder, make_config

NO_SUCH_TARGET = "tgtadm: can't find the target"


@pytest.fixture
def targets(recorder):
    with recorder.runner("tgt1").session() as session:
        yield TargetServer(session)


def has_tids(recorder, *tids: int) -> None:
    """tgtd has these TIDs, none of them marked: `show --tid` of another one fails."""
    recorder.fail("--op", "show", "--mode", "target", "--tid", rc=22, stderr=NO_SUCH_TARGET)
    for tid in tids:
        recorder.answer(*show_tid(tid), out=PARAMETERS)


@pytest.fixture
def shown(recorder):
    """tgtd lists the targets of SHOWN: TIDs 1, 3 and 4, none marked."""
    recorder.answer(*SHOW, out=SHOWN)
    has_tids(recorder, 1, 3, 4)
    return recorder


def no_hint(recorder) -> None:
    recorder.fail(*READ_HINT, stderr=f"cat: {HINT}: No such file or directory")


def makes(recorder, start: int, answer: str, iqn: str = IQN, automatic: bool = True, base: int = 1,
          **options) -> None:
    """tgt.NEW_TARGET from start (for iqn) prints answer."""
    recorder.answer(*make_target(start, iqn, automatic, base), out=f"{answer}\n", **options)


def stdin_of(recorder, monkeypatch) -> list:
    """The stdin of each command run from now on, in order (the recorder keeps the argv only)."""
    inputs = []
    run = recorder._run

    def keeping(host, cmd):
        inputs.append(cmd.input)
        return run(host, cmd)

    monkeypatch.setattr(recorder, "_run", keeping)
    return inputs


def test_listing_helper_parses_as_tgtadm_output(targets, recorder):
    recorder.answer(*SHOW, out=listing((2, IQN, ("/dev/a", "/dev/b"), ("iqn.x:node1",)), (5, LISTED)))
    first, second = targets.list()
    assert (first.tid, first.iqn, [lun.backing_store for lun in first.luns]) == (2, IQN, ["/dev/a", "/dev/b"])
    assert [nexus.initiator for nexus in first.sessions] == ["iqn.x:node1"]
    assert (second.tid, second.luns, second.sessions) == (5, (), ())


def test_new_starts_at_the_hint_and_lists_nothing(targets, recorder):
    recorder.answer(*READ_HINT, out="5\n")
    makes(recorder, 5, "new 5")
    assert targets.new(IQN) == (5, True)
    assert recorder.argvs() == [READ_HINT, make_target(5)]
    assert recorder.sessions == [("tgt1", False)]


def test_new_without_a_hint_starts_after_the_highest_tid_in_use(targets, shown):
    no_hint(shown)
    makes(shown, 5, "new 5")
    assert targets.new(IQN) == (5, True)
    assert shown.argvs() == [READ_HINT, SHOW, make_target(5)]


@pytest.mark.parametrize("hint", ["3\n", "", "x\n", "2147483648\n"])
def test_new_on_an_empty_tgtd_starts_at_base_tid_whatever_an_unusable_hint_says(hint):
    recorder = Recorder(make_config(HOST="tgt1", BASE_TID="10"))
    recorder.answer(*READ_HINT, out=hint)
    makes(recorder, 10, "new 10", base=10)
    with recorder.runner("tgt1").session() as session:
        assert TargetServer(session).new(IQN) == (10, True)
    assert recorder.argvs() == [READ_HINT, SHOW, make_target(10, base=10)]


def test_a_run_of_taken_tids_starts_again_after_the_highest(targets, shown):
    """The hint was lost or others took TIDs: NEW_TARGET tried its TIDs, all taken."""
    shown.answer(*READ_HINT, out="2\n")
    makes(shown, 2, "taken 65")
    makes(shown, 5, "new 5")
    assert targets.new(IQN) == (5, True)
    assert shown.argvs() == [READ_HINT, make_target(2), SHOW, make_target(5)]


def test_new_gives_up_after_its_attempts(targets, shown):
    shown.answer(*READ_HINT, out="2\n")
    makes(shown, 2, "taken 65")
    makes(shown, 5, "taken 68")
    with pytest.raises(OneIscsiError, match=f"no free TID for {IQN} on tgt1 after {NEW_TARGET_ATTEMPTS} attempts"):
        targets.new(IQN)
    assert shown.argvs() == [READ_HINT, make_target(2)] + [SHOW, make_target(5)] * (NEW_TARGET_ATTEMPTS - 1)


def test_new_of_an_existing_name_keeps_it(targets, shown):
    """NEW_TARGET found the TID free but the name taken; another's target is looked up in the listing."""
    no_file(shown, LISTED_50)
    shown.answer(*READ_HINT, out="5\n")
    makes(shown, 5, "name 5", LISTED_50)
    assert targets.new(LISTED_50) == (3, False)
    assert shown.argvs() == [READ_HINT, make_target(5, LISTED_50), cat(LISTED_50), SHOW]


def test_new_of_an_existing_target_of_one_iscsi_finds_it_by_its_tid(targets, recorder):
    recorder.answer(*READ_HINT, out="5\n")
    makes(recorder, 5, "name 5")
    on_file(recorder, TargetSpec(IQN, ("/dev/x",), tid=2))
    recorder.answer(*show_tid(2), out=marked(IQN))
    assert targets.new(IQN) == (2, False)
    assert recorder.argvs() == [READ_HINT, make_target(5), cat(IQN), show_tid(2)]


def test_a_name_gone_between_tgtds_answers_is_tried_again(targets, shown):
    no_file(shown)
    shown.answer(*READ_HINT, out="5\n")
    makes(shown, 5, "new 5")
    makes(shown, 5, "name 5", times=1)
    assert targets.new(IQN) == (5, True)
    assert shown.argvs() == [READ_HINT, make_target(5), cat(IQN), SHOW, make_target(5)]


@pytest.mark.parametrize("iqn, tid, answer, message", [
    (IQN, 3, "taken 3", "TID 3 is already used on tgt1"),
    (LISTED, 2, "name 2", f"target {LISTED} already exists on tgt1 with TID 1"),
    (LISTED, 3, "taken 3", f"target {LISTED} already exists on tgt1 with TID 1"),
])
def test_new_with_a_tid_that_conflicts(targets, shown, iqn, tid, answer, message):
    no_file(shown, iqn)
    makes(shown, tid, answer, iqn, automatic=False)
    with pytest.raises(OneIscsiError, match=message):
        targets.new(iqn, tid=tid)
    assert shown.argvs() == [make_target(tid, iqn, automatic=False), cat(iqn), SHOW]


def test_new_with_the_tid_the_name_has_keeps_it(targets, shown):
    no_file(shown, LISTED_50)
    makes(shown, 3, "taken 3", LISTED_50, automatic=False)
    assert targets.new(LISTED_50, tid=3) == (3, False)


def test_new_with_a_free_tid_uses_it_and_leaves_the_hint(targets, recorder):
    makes(recorder, 9, "new 9", automatic=False)
    assert targets.new(IQN, tid=9) == (9, True)
    assert recorder.argvs() == [make_target(9, automatic=False)]


def test_new_under_dry_run_shows_the_target_maker_from_the_hint():
    recorder = Recorder(make_config(HOST="tgt1"), dry_run=True)
    recorder.answer(*READ_HINT, out="7\n")
    with recorder.runner("tgt1").session() as session:
        assert TargetServer(session).new(IQN) == (7, True)
    assert recorder.argvs() == [READ_HINT]  # the maker itself is only printed


def test_new_of_a_bad_name_runs_nothing(targets, recorder):
    with pytest.raises(InvalidInput) as caught:
        targets.new(f"{IQN};touch x")
    assert caught.value.exit_code == 2
    assert recorder.calls == []


def test_get_and_tid_of(targets, shown):
    assert targets.tid_of(LISTED_50) == 3
    assert targets.get(LISTED).sessions[0].initiator == "iqn.2008-11.org.linux-kvm"
    with pytest.raises(NotFound, match=f"no target named {IQN} on tgt1"):
        targets.get(IQN)
    assert targets.find(LISTED[:-1]) is None  # exact names only


SPEC = TargetSpec(IQN, ("/dev/vg-one/lv-one-7", "/dev/b"), ALLOWED, tid=2)  # one-iscsi's, of TID 2


def test_find_of_a_target_of_one_iscsi_reads_its_file_and_its_mark_not_the_listing(targets, recorder):
    on_file(recorder, SPEC)
    recorder.answer(*show_tid(2), out=marked(IQN))
    found = targets.find(IQN)
    assert (found.tid, found.iqn, found.sessions) == (2, IQN, ())
    assert [(lun.lun, lun.backing_store) for lun in found.luns] == [(1, "/dev/vg-one/lv-one-7"), (2, "/dev/b")]
    assert recorder.argvs() == [cat(IQN), show_tid(2)]


def test_find_with_sessions_reads_the_connections_of_that_target_alone(targets, recorder):
    on_file(recorder, SPEC)
    recorder.answer(*show_tid(2), out=marked(IQN))
    recorder.answer(*show_conn(2), out="Session: 3\n    Connection: 0\n        Initiator: iqn.x:node1\n"
                                       "        IP Address: 10.0.0.5\n")
    assert targets.find(IQN, sessions=True).initiators == ["iqn.x:node1"]
    assert targets.get(IQN, sessions=True).sessions[0].addresses == ("10.0.0.5",)
    assert recorder.argvs() == [cat(IQN), show_tid(2), show_conn(2)] * 2


@pytest.mark.parametrize("spec, answer", [
    (TargetSpec(LISTED, ("/tmp/cap/a.img",), tid=1), PARAMETERS),  # made anew (tgt's start-up): not marked
    (TargetSpec(LISTED, ("/tmp/cap/a.img",), tid=1), marked(LISTED_50)),  # TID 1 marked for another name
])
def test_find_of_a_target_not_marked_with_its_name_at_its_tid_looks_in_the_listing_and_marks_it(
        targets, shown, spec, answer):
    on_file(shown, spec)
    shown.answer(*show_tid(1), out=answer)
    assert targets.tid_of(LISTED) == 1
    assert shown.argvs() == [cat(LISTED), show_tid(1), SHOW, mark_all((1, LISTED))]


@pytest.mark.parametrize("spec", [
    TargetSpec(LISTED, ("/tmp/cap/a.img",), tid=9),  # a TID tgtd does not have (stale)
    TargetSpec(LISTED, ("/tmp/cap/a.img",), tid=3),  # the TID of another target (stale)
])
def test_find_of_a_target_whose_file_records_a_stale_tid_takes_the_listings_and_marks_nothing(
        targets, shown, spec):
    on_file(shown, spec)
    assert targets.tid_of(LISTED) == 1
    assert shown.argvs() == [cat(LISTED), show_tid(spec.tid), SHOW]


@pytest.mark.parametrize("text", [
    None,  # no file: another's target
    tgtconf.render(TargetSpec(LISTED, ("/tmp/cap/a.img",))),  # a file of an earlier version: no TID
    f"<target {LISTED}>\n    write-cache off\n</target>\n",  # not in the form one-iscsi writes
])
def test_find_of_a_target_without_a_usable_recorded_tid_takes_the_listings(targets, shown, text):
    if text is None:
        no_file(shown, LISTED)
    else:
        shown.answer(*cat(LISTED), out=text)
    assert targets.tid_of(LISTED) == 1
    assert shown.argvs() == [cat(LISTED), SHOW]


def test_find_under_dry_run_marks_nothing():
    recorder = Recorder(make_config(HOST="tgt1"), dry_run=True)
    recorder.answer(*SHOW, out=SHOWN)
    on_file(recorder, TargetSpec(LISTED, ("/tmp/cap/a.img",), tid=1))
    recorder.answer(*show_tid(1), out=PARAMETERS)
    with recorder.runner("tgt1").session() as session:
        assert TargetServer(session).tid_of(LISTED) == 1
    assert recorder.argvs() == [cat(LISTED), show_tid(1), SHOW]


@pytest.fixture
def unsaved(shown):
    """No target of SHOWN has a saved file."""
    shown.fail("cat", "--", stderr="cat: no-such.conf: No such file or directory")
    return shown


def saved_as(recorder, *specs: TargetSpec) -> None:
    """The saved files of specs (read one by one)."""
    for spec in specs:
        on_file(recorder, spec)


def test_delete_of_a_target_of_one_iscsi_by_name_takes_its_file_mark_and_tid(targets, recorder):
    on_file(recorder, SPEC)
    recorder.answer(*show_tid(2), out=marked(IQN))
    targets.delete_and_forget(IQN)
    assert recorder.argvs() == [cat(IQN), show_tid(2), delete_target(2), forget(IQN)]


def test_delete_of_a_target_of_one_iscsi_by_tid_takes_the_name_its_mark_gives(targets, recorder):
    on_file(recorder, SPEC)
    recorder.answer(*show_tid(2), out=marked(IQN))
    targets.delete_and_forget("2")
    assert recorder.argvs() == [show_tid(2), cat(IQN), delete_target(2), forget(IQN)]


@pytest.mark.parametrize("given, looked_up", [
    ("3", [show_tid(3), SHOW, cat(LISTED_50)]),  # not marked
    (LISTED_50, [cat(LISTED_50), SHOW]),  # a file of an earlier version: no TID
])
def test_delete_by_tid_or_exact_name_also_forgets_the_config_file(targets, unsaved, given, looked_up):
    saved_as(unsaved, TargetSpec(LISTED_50, ("/dev/x",)))
    targets.delete_and_forget(given)
    assert unsaved.argvs() == [*looked_up, delete_target(3), forget(LISTED_50)]


def test_delete_by_tid_of_a_target_marked_by_hand_with_no_name_reads_no_file_of_it(targets, shown):
    """A mark is only a tgtd parameter: one set by hand to a path never names a file to read."""
    saved_as(shown, TargetSpec(LISTED_50, ("/dev/x",)))
    shown.answer(*show_tid(3), out=marked("../../../etc/shadow"))
    targets.delete_and_forget("3")
    assert shown.argvs() == [show_tid(3), SHOW, cat(LISTED_50), delete_target(3), forget(LISTED_50)]


def test_delete_of_a_tid_marked_for_a_name_whose_file_records_another_tid_takes_the_listing(targets, shown):
    saved_as(shown, TargetSpec(LISTED_50, ("/dev/x",), tid=7))
    shown.answer(*show_tid(3), out=marked(LISTED_50))
    targets.delete_and_forget("3")
    assert shown.argvs() == [show_tid(3), cat(LISTED_50), SHOW, delete_target(3), forget(LISTED_50)]


def test_delete_with_force(targets, unsaved):
    saved_as(unsaved, TargetSpec(LISTED, ("/tmp/cap/a.img",)))
    targets.delete_and_forget(LISTED, force=True)
    assert unsaved.argvs() == [cat(LISTED), SHOW, delete_target(1, "--force"), forget(LISTED)]


def test_delete_of_a_target_one_iscsi_did_not_make_needs_force(targets, unsaved):
    with pytest.raises(OneIscsiError) as refused:
        targets.delete_and_forget("3")
    assert str(refused.value) == (f"target {LISTED_50} (TID 3) on tgt1 was not made by one-iscsi "
                                  f"(no {conf(LISTED_50)}): use --force to delete it anyway")
    assert unsaved.argvs() == [show_tid(3), SHOW, cat(LISTED_50)]
    targets.delete_and_forget(LISTED_50, force=True)
    assert unsaved.argvs()[3:] == [cat(LISTED_50), SHOW, delete_target(3, "--force")]  # no file to forget


def test_delete_of_a_tid_tgtd_does_not_have(targets, shown):
    with pytest.raises(NotFound, match="no target with TID 9 on tgt1"):
        targets.delete_and_forget("9")
    assert shown.argvs() == [show_tid(9)]


def test_delete_of_a_target_in_use_keeps_its_config_file(targets, recorder):
    on_file(recorder, SPEC)
    recorder.answer(*show_tid(2), out=marked(IQN))
    recorder.fail(*delete_target(2), rc=22, stderr="tgtadm: this target is still active")
    with pytest.raises(OneIscsiError, match="TID 2 on tgt1 still has sessions: log the initiators out first"):
        targets.delete_and_forget(IQN)
    assert recorder.argvs() == [cat(IQN), show_tid(2), delete_target(2)]


def test_delete_of_an_unknown_name(targets, unsaved):
    with pytest.raises(NotFound, match=f"no target named {IQN} on tgt1"):
        targets.delete_and_forget(IQN)
    assert unsaved.argvs() == [cat(IQN), SHOW]


@pytest.mark.parametrize("given", ["0", "-1", "iqn.bad name", f"{IQN}$(touch x)", ""])
def test_delete_of_bad_input_runs_nothing(targets, recorder, given):
    with pytest.raises(InvalidInput):
        targets.delete_and_forget(given)
    assert recorder.calls == []


def test_allow_binds_addresses_names_and_the_chap_account(targets, recorder):
    targets.allow(4, TargetSpec(IQN, ("/dev/x",), ALLOWED, *CHAP))
    assert recorder.argvs() == allowed(4)


def test_allow_keeps_an_existing_account(targets, recorder):
    recorder.fail("--mode", "account", "--user", rc=22, stderr="tgtadm: this account already exists", times=1)
    targets.allow(4, TargetSpec(IQN, ("/dev/x",), ("ALL",), *CHAP))
    assert recorder.argvs() == [bind(4, "address", "ALL"), *chap(4)]


def test_bind_lun_of_a_relative_path_runs_nothing(targets, recorder):
    with pytest.raises(InvalidInput, match="backing store must be an absolute path"):
        targets.bind_lun(4, "dev/x")
    assert recorder.calls == []
    targets.bind_lun(4, "/dev/x", lun=2)
    assert recorder.argvs() == [new_lun(4, "/dev/x", 2)]


def test_save_writes_the_file_with_its_content(targets, recorder, monkeypatch):
    inputs = stdin_of(recorder, monkeypatch)
    spec = TargetSpec(IQN, ("/dev/vg-one/lv-one-7",), ALLOWED, *CHAP)
    targets.save(spec)
    assert recorder.argvs() == saved()
    assert inputs[2] == tgtconf.render(spec)
    assert f"incominguser {CHAP[0]} {CHAP[1]}" in inputs[2]


def test_save_writes_the_include_of_conf_dir_once(targets, recorder, monkeypatch):
    inputs = stdin_of(recorder, monkeypatch)
    recorder.fail("test", "-e", INCLUDE, stderr="")
    targets.save(TargetSpec(IQN, ("/dev/x",)))
    assert recorder.argvs() == [["test", "-e", INCLUDE], *writes(INCLUDE, mode="0644"), *writes(conf())]
    assert inputs[2] == f"ignore-errors yes\ninclude {CONF_DIR}/*.conf\n"


def test_export_makes_target_access_rules_and_luns(targets, shown):
    shown.answer(*READ_HINT, out="2\n")
    makes(shown, 2, "new 2")
    spec = TargetSpec(IQN, ("/dev/a", "/dev/b"), ALLOWED, *CHAP)
    assert targets.export(spec) == (2, True)
    assert shown.argvs() == [READ_HINT, make_target(2), *allowed(2), new_lun(2, "/dev/a"), new_lun(2, "/dev/b", 2)]


def test_export_keeps_a_target_with_the_same_luns_and_refuses_other_luns(targets, unsaved):
    unsaved.answer(*READ_HINT, out="5\n")
    makes(unsaved, 5, "name 5", LISTED)
    assert targets.export(TargetSpec(LISTED, ("/tmp/cap/a.img",))) == (1, False)
    with pytest.raises(OneIscsiError, match=f"target {LISTED} already exists on tgt1 with other LUNs"):
        targets.export(TargetSpec(LISTED, ("/tmp/cap/b.img",)))
    assert unsaved.argvs() == [READ_HINT, make_target(5, LISTED), cat(LISTED), SHOW, cat(LISTED), SHOW] * 2


FIND = ["find", CONF_DIR, "-maxdepth", "1", "-name", "*.conf", "-printf", "%s %f\\n"]


def saved_files(recorder, *files) -> None:
    """CONF_DIR holds the files of specs, or (name, text) pairs: listed with their sizes, read by one cat."""
    texts = sorted((f"{spec.iqn}.conf", tgtconf.render(spec)) if isinstance(spec, TargetSpec) else spec
                   for spec in files)
    recorder.answer(*FIND, out="".join(f"{len(text.encode())} {name}\n" for name, text in reversed(texts)))
    recorder.answer("cat", "--", *[f"{CONF_DIR}/{name}" for name, _ in texts], out="".join(text for _, text in texts))


def read_all(*iqns: str) -> list[str]:
    return ["cat", "--", *[conf(iqn) for iqn in iqns]]


def test_restore_lists_tgtd_once_creates_the_missing_targets_at_their_tids_and_marks_the_present_ones(
        targets, shown):
    saved_files(shown, TargetSpec(IQN, ("/dev/vg-one/lv-one-7",), ALLOWED, *CHAP, tid=2),
                TargetSpec(LISTED, ("/tmp/cap/a.img",), tid=1))
    makes(shown, 2, "new 2", automatic=False)
    assert targets.restore() == ([IQN], [LISTED], [])
    assert shown.argvs() == [FIND, read_all(LISTED, IQN), SHOW,  # sorted by name: localhost before tgt1
                             make_target(2, automatic=False), *allowed(2), new_lun(2, "/dev/vg-one/lv-one-7"),
                             mark_all((1, LISTED))]


def test_restore_records_the_tid_a_target_has_when_its_file_has_none_or_another(targets, shown, monkeypatch):
    """Files of an earlier version, a recorded TID another target took: the targets come back at another TID."""
    files = written(shown, monkeypatch)
    saved_files(shown, TargetSpec(IQN, ("/dev/vg-one/lv-one-7",), tid=3), TargetSpec(LISTED, ("/tmp/cap/a.img",)))
    shown.answer(*READ_HINT, out="5\n")
    makes(shown, 5, "new 5")
    assert targets.restore() == ([IQN], [LISTED], [])
    assert shown.argvs() == [FIND, read_all(LISTED, IQN), SHOW,
                             READ_HINT, make_target(5), bind(5, "address", "ALL"), new_lun(5, "/dev/vg-one/lv-one-7"),
                             *saved(LISTED, IQN), mark_all((1, LISTED))]  # all files, then all marks, in one go
    assert files() == [TargetSpec(LISTED, ("/tmp/cap/a.img",), tid=1),
                       TargetSpec(IQN, ("/dev/vg-one/lv-one-7",), tid=5)]


def test_restore_records_tids_file_by_file_when_writing_them_together_fails(targets, shown):
    saved_files(shown, TargetSpec(IQN, ("/dev/vg-one/lv-one-7",), tid=3), TargetSpec(LISTED, ("/tmp/cap/a.img",)))
    shown.answer(*READ_HINT, out="5\n")
    makes(shown, 5, "new 5")
    moving = saved(LISTED)[4]
    shown.fail(*moving, stderr="mv: cannot move: Read-only file system")
    restored, present, failed = targets.restore()
    assert (restored, present) == ([IQN], [])  # LISTED is back in tgtd, but its file records no TID
    assert failed == [(LISTED, f"{LISTED}: mv failed on tgt1 (exit 1): mv: cannot move: Read-only file system")]
    together = saved(LISTED, IQN)
    tried = [*together[:together.index(moving) + 1], *saved(LISTED)[:5], *saved(IQN)]  # the batch, then one by one
    assert shown.argvs()[-len(tried) - 1:] == [*tried, mark_all((1, LISTED))]  # the marks after the files


def test_restore_without_conf_dir_restores_nothing(targets, recorder):
    recorder.fail(*FIND, stderr=f"find: '{CONF_DIR}': No such file or directory")
    assert targets.restore() == ([], [], [])
    assert recorder.argvs() == [FIND]


def test_restore_reads_again_file_by_file_files_changed_meanwhile(targets, shown):
    saved_files(shown, TargetSpec(LISTED, ("/tmp/cap/a.img",), tid=1))
    shown.answer(*FIND, out=f"9999 {LISTED}.conf\n")
    assert targets.restore() == ([], [LISTED], [])
    assert shown.argvs() == [FIND, cat(LISTED), cat(LISTED), SHOW, mark_all((1, LISTED))]


IQN_8 = f"{BASE}:tgt1.vg-one.lv-one-8"
BROKEN = f"{CONF_DIR}/broken.conf"


def test_restore_reports_a_file_without_target_and_goes_on(targets, shown):
    saved_files(shown, ("broken.conf", "# Written by one-iscsi\n\n"),
                TargetSpec(IQN_8, ("/dev/vg-one/lv-one-8",), tid=2))
    makes(shown, 2, "new 2", IQN_8, automatic=False)
    assert targets.restore() == ([IQN_8], [], [(BROKEN, f"{BROKEN} has no <target IQN> section")])
    assert shown.argvs() == [FIND, ["cat", "--", BROKEN, conf(IQN_8)], SHOW,
                             make_target(2, IQN_8, automatic=False), bind(2, "address", "ALL"),
                             new_lun(2, "/dev/vg-one/lv-one-8")]


@pytest.mark.parametrize("text, reason", [
    (f"<target {IQN}>\n    backing-store /dev/x;touch${{IFS}}/tmp/x\n</target>\n",
     "backing store '/dev/x;touch${IFS}/tmp/x' must hold only"),
    (f"<target {IQN}>\n    backing-store /dev/x\n    incominguser evil pass$(touch${{IFS}}/tmp/y)\n</target>\n",
     "CHAP password must be 12 to 16"),
    (f"<target {IQN}>\n    backing-store /dev/x\n    initiator-address </target>\n</target>\n",
     "initiator '</target>' must be ALL"),
    (f"<target {IQN}>\n    backing-store /dev/x\n    write-cache off\n</target>\n",
     "line 3: unknown directive 'write-cache'"),
    (f"<target {IQN}>\n    controller_tid 0\n</target>\n", "line 2: controller_tid must be an integer from 1"),
    (f"<target {IQN}>\n    controller_tid 2;reboot\n</target>\n", "line 2: controller_tid must be an integer from 1"),
    (f"<target {IQN}>\n    controller_tid 2\n    controller_tid 3\n</target>\n", "line 3: a second controller_tid"),
    (f"<target {IQN}>\n    backing-store /dev/x\n", f"<target {IQN}> has no </target>"),
    (f"<target {IQN}>\n    backing-store /dev/x\n</target>\n<target {IQN_8}>\n</target>\n",
     "line 4: a second <target> section"),
    (f"<target {IQN_8}>\n    backing-store /dev/x\n</target>\n",
     f"holds target {IQN_8}, not the one of its name"),
])
def test_restore_refuses_a_file_render_would_not_write_and_runs_nothing_for_it(targets, recorder, text, reason):
    saved_files(recorder, (f"{IQN}.conf", text))
    restored, present, [(what, message)] = targets.restore()
    assert (restored, present, what) == ([], [], conf(IQN))
    assert message.startswith(conf(IQN)) and reason in message and "\n" not in message
    assert recorder.argvs() == [FIND, cat(IQN)]


def test_restore_reports_a_present_target_with_other_luns_and_leaves_it(targets, shown):
    saved_files(shown, TargetSpec(LISTED, ("/dev/elsewhere",), tid=1))
    assert targets.restore() == ([], [], [(LISTED, f"target {LISTED} already exists on tgt1 with other LUNs")])
    assert shown.argvs() == [FIND, cat(LISTED), SHOW]


def test_restore_deletes_a_half_made_target_and_restores_the_next_one(targets, shown):
    saved_files(shown, TargetSpec(IQN, ("/dev/vg-one/lv-one-7",), tid=2),
                TargetSpec(IQN_8, ("/dev/vg-one/lv-one-8",), tid=5))
    makes(shown, 2, "new 2", automatic=False)
    makes(shown, 5, "new 5", IQN_8, automatic=False)
    shown.fail("--mode", "logicalunit", "/dev/vg-one/lv-one-7", rc=22, stderr="tgtadm: invalid request")
    restored, present, [(what, reason)] = targets.restore()
    assert (restored, present, what) == ([IQN_8], [], IQN)
    assert reason.startswith(f"{IQN}: cannot add /dev/vg-one/lv-one-7 as LUN 1 of TID 2")
    assert shown.argvs() == [FIND, read_all(IQN, IQN_8), SHOW,
                             make_target(2, automatic=False), bind(2, "address", "ALL"),
                             new_lun(2, "/dev/vg-one/lv-one-7"), delete_target(2, "--force"),
                             make_target(5, IQN_8, automatic=False), bind(5, "address", "ALL"),
                             new_lun(5, "/dev/vg-one/lv-one-8")]


def test_saved_reads_the_targets_persistence_file(targets, recorder):
    spec = TargetSpec(IQN, ("/dev/vg-one/lv-one-7",), ALLOWED, *CHAP)
    recorder.answer("cat", "--", f"{CONF_DIR}/{IQN}.conf", out=tgtconf.render(spec))
    assert targets.saved(IQN) == spec
    assert recorder.argvs() == [["cat", "--", f"{CONF_DIR}/{IQN}.conf"]]


def test_saved_of_a_target_without_its_file_is_not_found(targets, recorder):
    recorder.fail("cat", "--", stderr=f"cat: {CONF_DIR}/{IQN}.conf: No such file or directory")
    with pytest.raises(NotFound) as caught:
        targets.saved(IQN)
    assert str(caught.value) == f"no saved configuration of target {IQN} on tgt1 ({CONF_DIR}/{IQN}.conf)"
    assert recorder.argvs() == [["cat", "--", f"{CONF_DIR}/{IQN}.conf"]]


# Targets by hand: TID|IQN, ownership, LUNs, ACL and CHAP, each change in tgtd and in the saved file

IQN_6 = f"{BASE}:localhost.vg-one.lv-one-6"  # TID 4 of SHOWN: no LUN, no ACL
NODE1 = "iqn.1993-08.org.debian:01:node1"


def written(recorder, monkeypatch) -> list:
    """The contents written to files from now on, in order."""
    inputs = stdin_of(recorder, monkeypatch)
    return lambda: [tgtconf.parse(text, "written") for text in inputs if text and "<target" in text]


def on_tgtd(recorder, *targets: tuple, accounts: tuple = ()) -> None:
    """tgtd lists targets (as support.expected.listing takes them) and has accounts."""
    recorder.answer(*SHOW, out=listing(*targets))
    recorder.answer("show", "--mode", "account", out="".join(["Account list:\n", *[f"    {a}\n" for a in accounts]])
                    if accounts else "")
    recorder.fail("cat", "--", stderr="cat: x: No such file or directory")


SHOW_ACCOUNTS = tgtadm("--op", "show", "--mode", "account")


@pytest.mark.parametrize("given, tid", [("3", 3), (LISTED_50, 3), ("1", 1)])
def test_resolve_takes_a_tid_or_an_exact_iqn(targets, shown, given, tid):
    assert targets.resolve(given).tid == tid
    assert shown.argvs() == [SHOW]


@pytest.mark.parametrize("given, error, message", [
    ("9", NotFound, "no target with TID 9 on tgt1"),
    (LISTED_50 + "0", NotFound, f"no target named {LISTED_50}0 on tgt1"),
    ("0", InvalidInput, "TID must be a positive integer up to 2147483647, got '0'"),
    ("2147483648", InvalidInput, "TID must be a positive integer up to 2147483647, got '2147483648'"),
    ("iqn.x;y", InvalidInput, "IQN 'iqn.x;y' contains characters tgtd refuses"),
])
def test_resolve_refuses_what_is_not_a_target(targets, shown, given, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        targets.resolve(given)
    assert shown.argvs() == ([SHOW] if error is NotFound else [])


def test_overview_marks_the_targets_saved_in_conf_dir(targets, shown):
    shown.answer(*FIND, out=f"153 {LISTED_50}.conf\n")
    listed = targets.overview()
    assert [(entry.target.tid, entry.managed) for entry in listed] == [(1, False), (3, True), (4, False)]
    assert list(listed[1].as_dict())[:3] == ["tid", "iqn", "managed"]
    assert [entry.managed for entry in targets.overview("3")] == [True]
    assert shown.argvs() == [SHOW, FIND, SHOW, FIND]


def test_overview_without_conf_dir_marks_none(targets, shown):
    shown.fail(*FIND, stderr=f"find: '{CONF_DIR}': No such file or directory")
    assert [entry.managed for entry in targets.overview()] == [False, False, False]


def test_create_saves_a_target_with_its_tid_no_lun_and_no_initiator(targets, unsaved, monkeypatch):
    files = written(unsaved, monkeypatch)
    unsaved.answer(*READ_HINT, out="5\n")
    makes(unsaved, 5, "new 5")
    assert targets.create(IQN) == (5, True)
    assert unsaved.argvs() == [cat(IQN), READ_HINT, make_target(5), *saved()]
    assert files() == [TargetSpec(IQN, (), (), tid=5)]


def test_create_of_a_target_tgtd_has_changes_nothing(targets, unsaved):
    unsaved.answer(*READ_HINT, out="5\n")
    makes(unsaved, 5, "name 5", LISTED_50)
    assert targets.create(LISTED_50) == (3, False)
    assert unsaved.argvs() == [cat(LISTED_50), READ_HINT, make_target(5, LISTED_50), cat(LISTED_50), SHOW]


def test_create_of_a_target_of_one_iscsi_finds_it_by_its_tid(targets, recorder):
    on_file(recorder, TargetSpec(IQN, (), (), tid=2))
    recorder.answer(*show_tid(2), out=marked(IQN))
    assert targets.create(IQN) == (2, False)
    with pytest.raises(OneIscsiError, match=f"target {IQN} already exists on tgt1 with TID 2"):
        targets.create(IQN, tid=3)
    assert recorder.argvs() == [cat(IQN), show_tid(2)] * 2


@pytest.mark.parametrize("tid, looked_up", [(0, [SHOW]), (2, [show_tid(2), SHOW])])
def test_create_of_a_target_saved_but_missing_from_tgtd_points_at_restore(targets, shown, tid, looked_up):
    saved_as(shown, TargetSpec(IQN, ("/dev/vg-one/lv-one-7",), tid=tid))
    with pytest.raises(OneIscsiError, match=f"target {IQN} is saved on tgt1 but not in tgtd: bring it back with "
                                            "`one-iscsi -H tgt1 target restore`"):
        targets.create(IQN)
    assert shown.argvs() == [cat(IQN), *looked_up]


def test_create_deletes_the_target_again_when_its_file_cannot_be_written(targets, unsaved):
    unsaved.answer(*READ_HINT, out="5\n")
    makes(unsaved, 5, "new 5")
    unsaved.fail("mv", "-f", stderr="mv: cannot move: Read-only file system")
    with pytest.raises(OneIscsiError, match="writing the target's config file failed on tgt1: mv failed"):
        targets.create(IQN)
    assert unsaved.argvs() == [cat(IQN), READ_HINT, make_target(5), *saved()[:5], delete_target(5, "--force")]


def test_add_lun_binds_it_and_saves_it(targets, unsaved, monkeypatch):
    saved_as(unsaved, TargetSpec(IQN_6, (), ("ALL",)))
    files = written(unsaved, monkeypatch)
    assert targets.add_lun("4", "/dev/vg-one/lv-one-6", lun=2) == []
    assert unsaved.argvs() == [SHOW, cat(IQN_6), ["test", "-e", "/dev/vg-one/lv-one-6"],
                               new_lun(4, "/dev/vg-one/lv-one-6", 2), *saved(IQN_6)]
    # the file records the TID the target has
    assert files() == [TargetSpec(IQN_6, ("/dev/vg-one/lv-one-6",), ("ALL",), lun_numbers=(2,), tid=4)]


@pytest.mark.parametrize("target, device, lun, message", [
    ("3", "/dev/x", 1, f"LUN 1 of target {LISTED_50} (TID 3) on tgt1 is in use by /tmp/cap/c d.img: "
                       "choose another --lun"),
    ("4", "/tmp/cap/a.img", 1, f"/tmp/cap/a.img is already LUN 1 of target {LISTED} (TID 1) on tgt1: "
                               "one backing store, one target (--force to bind it anyway)"),
    ("4", "/dev/none", 1, "no such file or device: /dev/none on tgt1"),
])
def test_add_lun_refuses_a_lun_in_use_a_store_of_another_target_and_a_missing_store(
        targets, unsaved, target, device, lun, message):
    saved_as(unsaved, TargetSpec(LISTED_50, ()), TargetSpec(IQN_6, ()))
    unsaved.fail("test", "-e", "/dev/none", stderr="")
    with pytest.raises(OneIscsiError) as refused:
        targets.add_lun(target, device, lun)
    assert str(refused.value) == message
    assert not [argv for argv in unsaved.argvs() if "new" in argv or "mv" in argv]


@pytest.mark.parametrize("device, lun, message", [
    ("dev/x", 1, "backing store must be an absolute path, got 'dev/x'"),
    ("/dev/x", 16384, "LUN must be from 1 to 16383, got 16384"),
])
def test_add_lun_of_bad_input_runs_nothing(targets, recorder, device, lun, message):
    with pytest.raises(InvalidInput, match=message):
        targets.add_lun("4", device, lun)
    assert recorder.calls == []


def test_add_lun_of_a_path_a_saved_file_cannot_hold_changes_nothing(targets, unsaved):
    saved_as(unsaved, TargetSpec(IQN_6, ()))
    with pytest.raises(InvalidInput, match="backing store must hold only letters, .* got '/dev/x;touch y'"):
        targets.add_lun("4", "/dev/x;touch y")
    assert unsaved.argvs() == [SHOW, cat(IQN_6)]
    targets.add_lun("3", "/srv/a b;c.img", 3, force=True)  # a target one-iscsi did not make: tgtd alone
    assert unsaved.argvs()[-1] == new_lun(3, "/srv/a b;c.img", 3)


def test_add_lun_forced_binds_a_store_of_another_target_and_saves_it(targets, unsaved, monkeypatch):
    saved_as(unsaved, TargetSpec(IQN_6, ()))
    files = written(unsaved, monkeypatch)
    targets.add_lun(IQN_6, "/tmp/cap/a.img", force=True)
    assert files() == [TargetSpec(IQN_6, ("/tmp/cap/a.img",), tid=4)]


def test_add_lun_takes_the_lun_back_when_the_file_cannot_be_written(targets, unsaved):
    saved_as(unsaved, TargetSpec(IQN_6, ()))
    unsaved.fail("mv", "-f", stderr="mv: cannot move: Read-only file system")
    with pytest.raises(OneIscsiError, match="writing the target's config file failed on tgt1"):
        targets.add_lun("4", "/dev/x")
    assert unsaved.argvs()[-2:] == [saved(IQN_6)[4], tgtadm("--op", "delete", "--mode", "logicalunit", "--tid",
                                                            "4", "--lun", "1")]


def test_add_lun_when_tgtd_refuses_the_store_saves_nothing(targets, unsaved):
    saved_as(unsaved, TargetSpec(IQN_6, ()))
    unsaved.fail(*new_lun(4, "/dev/x"), rc=22, stderr="tgtadm: invalid request")
    with pytest.raises(OneIscsiError, match="cannot add /dev/x as LUN 1 of TID 4"):
        targets.add_lun("4", "/dev/x")
    assert unsaved.argvs()[-1] == new_lun(4, "/dev/x")


def delete_lun(tid: int, lun: int = 1) -> list[str]:
    return tgtadm("--op", "delete", "--mode", "logicalunit", "--tid", str(tid), "--lun", str(lun))


def test_remove_lun_unbinds_it_and_saves_the_others(targets, recorder, monkeypatch):
    on_tgtd(recorder, (2, IQN, ("/dev/a", "/dev/b")))
    saved_as(recorder, TargetSpec(IQN, ("/dev/a", "/dev/b")))
    files = written(recorder, monkeypatch)
    targets.remove_lun(IQN, 1)
    assert recorder.argvs() == [SHOW, cat(IQN), delete_lun(2, 1), *saved()]
    assert files() == [TargetSpec(IQN, ("/dev/b",), lun_numbers=(2,), tid=2)]


def test_remove_lun_with_sessions_needs_force(targets, recorder):
    on_tgtd(recorder, (2, IQN, ("/dev/a",), ("iqn.x:node1", "iqn.x:node2")))
    saved_as(recorder, TargetSpec(IQN, ("/dev/a",)))
    with pytest.raises(OneIscsiError) as refused:
        targets.remove_lun("2")
    assert str(refused.value) == (f"target {IQN} (TID 2) on tgt1 has sessions (iqn.x:node1, iqn.x:node2): "
                                  "log them out first, or use --force")
    assert recorder.argvs() == [SHOW, cat(IQN)]
    targets.remove_lun("2", force=True)
    assert recorder.argvs()[4:] == [delete_lun(2), *saved()]


def test_remove_lun_of_a_lun_the_target_lacks(targets, recorder):
    on_tgtd(recorder, (2, IQN, ("/dev/a",)))
    saved_as(recorder, TargetSpec(IQN, ("/dev/a",)))
    with pytest.raises(NotFound, match=f"target {IQN} \\(TID 2\\) on tgt1 has no LUN 2"):
        targets.remove_lun("2", 2)
    assert recorder.argvs() == [SHOW, cat(IQN)]


def test_remove_lun_only_saved_changes_the_file_only(targets, recorder, monkeypatch):
    """tgt's start-up skips a backing store that is gone: the target comes back without that LUN."""
    on_tgtd(recorder, (2, IQN, ("/dev/a",)))
    saved_as(recorder, TargetSpec(IQN, ("/dev/a", "/dev/gone")))
    files = written(recorder, monkeypatch)
    targets.remove_lun("2", 2)
    assert recorder.argvs() == [SHOW, cat(IQN), *saved()]
    assert files() == [TargetSpec(IQN, ("/dev/a",), tid=2)]


def test_remove_lun_adds_it_again_when_the_file_cannot_be_written(targets, recorder):
    on_tgtd(recorder, (2, IQN, ("/dev/a",)))
    saved_as(recorder, TargetSpec(IQN, ("/dev/a",)))
    recorder.fail("mv", "-f", stderr="mv: cannot move: Read-only file system")
    with pytest.raises(OneIscsiError, match="writing the target's config file failed on tgt1"):
        targets.remove_lun("2")
    assert recorder.argvs()[-1] == new_lun(2, "/dev/a")


def unbind(tid: int, kind: str, value: str) -> list[str]:
    return tgtadm("--op", "unbind", "--mode", "target", "--tid", str(tid), f"--initiator-{kind}", value)


def test_allow_initiators_binds_addresses_and_names_and_saves_them(targets, recorder, monkeypatch):
    on_tgtd(recorder, (2, IQN, (), (), ()))
    saved_as(recorder, TargetSpec(IQN, (), ()))
    files = written(recorder, monkeypatch)
    assert targets.allow_initiators(IQN, ["10.0.0.0/24", NODE1]) == []
    assert recorder.argvs() == [SHOW, cat(IQN), bind(2, "address", "10.0.0.0/24"), bind(2, "name", NODE1),
                                *saved()]
    assert files() == [TargetSpec(IQN, (), ("10.0.0.0/24", NODE1), tid=2)]


def test_allow_of_all_beside_other_entries_says_they_restrict_nothing(targets, recorder, monkeypatch):
    on_tgtd(recorder, (2, IQN, (), (), ("10.0.0.5",)))
    saved_as(recorder, TargetSpec(IQN, (), ("10.0.0.5",)))
    files = written(recorder, monkeypatch)
    notes = targets.allow_initiators("2", ["ALL", "10.0.0.5"])
    assert notes == ["10.0.0.5 was allowed already",
                     f"{IQN} lets every initiator in (ALL): the other entries restrict nothing until ALL is removed"]
    assert recorder.argvs() == [SHOW, cat(IQN), bind(2, "address", "ALL"), *saved()]
    assert files() == [TargetSpec(IQN, (), ("10.0.0.5", "ALL"), tid=2)]


@pytest.mark.parametrize("initiators, message", [
    ([], "name at least one initiator"),
    (["10.0.0.1;touch x"], "initiator must be ALL, addresses"),
    (["ALL", "</target>"], "initiator must be ALL"),
])
def test_allow_or_deny_of_bad_initiators_runs_nothing(targets, recorder, initiators, message):
    for change in (targets.allow_initiators, targets.deny_initiators):
        with pytest.raises(InvalidInput, match=message):
            change("2", initiators)
    assert recorder.calls == []


def test_deny_initiators_unbinds_them_and_saves_the_rest(targets, recorder, monkeypatch):
    on_tgtd(recorder, (2, IQN, (), (), ("10.0.0.5", NODE1)))
    saved_as(recorder, TargetSpec(IQN, (), ("10.0.0.5", NODE1)))
    files = written(recorder, monkeypatch)
    assert targets.deny_initiators("2", [NODE1]) == []
    on_tgtd(recorder, (2, IQN, (), (), ("10.0.0.5",)))
    saved_as(recorder, TargetSpec(IQN, (), ("10.0.0.5",)))
    assert targets.deny_initiators("2", ["10.0.0.5"]) == [f"{IQN} now lets no initiator in"]
    assert recorder.argvs() == [SHOW, cat(IQN), unbind(2, "name", NODE1), *saved(),
                                SHOW, cat(IQN), unbind(2, "address", "10.0.0.5"), *saved()]
    assert files() == [TargetSpec(IQN, (), ("10.0.0.5",), tid=2), TargetSpec(IQN, (), (), tid=2)]


def test_deny_of_an_initiator_not_allowed(targets, recorder):
    on_tgtd(recorder, (2, IQN, (), (), ("10.0.0.5",)))
    saved_as(recorder, TargetSpec(IQN, (), ("10.0.0.5",)))
    with pytest.raises(NotFound, match=f"10.0.0.6 is not in the ACL of target {IQN} \\(TID 2\\) on tgt1"):
        targets.deny_initiators("2", ["10.0.0.5", "10.0.0.6"])
    assert recorder.argvs() == [SHOW, cat(IQN)]


def test_deny_binds_again_when_the_file_cannot_be_written(targets, recorder):
    on_tgtd(recorder, (2, IQN, (), (), ("10.0.0.5", NODE1)))
    saved_as(recorder, TargetSpec(IQN, (), ("10.0.0.5", NODE1)))
    recorder.fail("mv", "-f", stderr="mv: cannot move: Read-only file system")
    with pytest.raises(OneIscsiError, match="writing the target's config file failed"):
        targets.deny_initiators("2", ["10.0.0.5", NODE1])
    assert recorder.argvs()[-2:] == [bind(2, "name", NODE1), bind(2, "address", "10.0.0.5")]


PASSWORD = "secret-pass-13"


def account(op: str, *args: str) -> list[str]:
    return tgtadm("--op", op, "--mode", "account", *args)


def test_set_chap_makes_the_account_binds_it_and_saves_it(targets, recorder, monkeypatch):
    on_tgtd(recorder, (2, IQN, ("/dev/a",)))
    saved_as(recorder, TargetSpec(IQN, ("/dev/a",)))
    files = written(recorder, monkeypatch)
    assert targets.set_chap("2", "u1", PASSWORD) == []
    assert recorder.argvs() == [SHOW, cat(IQN), SHOW_ACCOUNTS, account("new", "--user", "u1", "--password", PASSWORD),
                                account("bind", "--tid", "2", "--user", "u1"), *saved()]
    assert files() == [TargetSpec(IQN, ("/dev/a",), ("ALL",), "u1", PASSWORD, tid=2)]


def test_set_chap_binds_the_new_user_before_the_old_one_goes(targets, recorder):
    on_tgtd(recorder, (2, IQN, (), (), ("ALL",), ("old",)))
    saved_as(recorder, TargetSpec(IQN, (), ("ALL",), "old", "old-password-1"))
    targets.set_chap("2", "u1", PASSWORD)
    assert recorder.argvs()[3:6] == [account("new", "--user", "u1", "--password", PASSWORD),
                                     account("bind", "--tid", "2", "--user", "u1"),
                                     account("unbind", "--tid", "2", "--user", "old")]


def test_set_chap_takes_an_existing_user_with_the_password_it_was_saved_with(targets, recorder):
    on_tgtd(recorder, (2, IQN), (3, IQN_6, (), (), ("ALL",), ("u1",)), accounts=("u1",))
    saved_as(recorder, TargetSpec(IQN, ()), TargetSpec(IQN_6, (), ("ALL",), "u1", PASSWORD))
    targets.set_chap("2", "u1", PASSWORD)
    assert recorder.argvs() == [SHOW, cat(IQN), SHOW_ACCOUNTS, cat(IQN_6),
                                account("bind", "--tid", "2", "--user", "u1"), *saved()]
    with pytest.raises(OneIscsiError) as refused:
        targets.set_chap("2", "u1", "other-password")
    assert str(refused.value) == (f"CHAP user u1 on tgt1 has another password (that of target {IQN_6}), which tgtd "
                                  "cannot change without leaving its targets open: give that password, or choose "
                                  "another user")
    assert "other-password" not in str(refused.value)


def test_set_chap_takes_the_configurations_user_with_its_password(monkeypatch):
    recorder = Recorder(make_config(HOST="tgt1", CHAP_USER="one", CHAP_PASSWORD=CHAP[1]))
    on_tgtd(recorder, (2, IQN), (3, IQN_6, (), (), ("ALL",), ("one",)), accounts=("one",))
    saved_as(recorder, TargetSpec(IQN, ()))
    with recorder.runner("tgt1").session() as session:
        TargetServer(session).set_chap("2", "one", CHAP[1])
        with pytest.raises(OneIscsiError, match="another password \\(that of CHAP_PASSWORD of the configuration\\)"):
            TargetServer(session).set_chap("2", "one", PASSWORD)
    assert ["cat", "--", conf(IQN_6)] not in recorder.argvs()


def test_set_chap_makes_an_account_no_target_uses_again(targets, recorder):
    on_tgtd(recorder, (2, IQN), accounts=("u1",))
    saved_as(recorder, TargetSpec(IQN, ()))
    targets.set_chap("2", "u1", PASSWORD)
    assert recorder.argvs()[2:6] == [SHOW_ACCOUNTS, account("delete", "--user", "u1"),
                                     account("new", "--user", "u1", "--password", PASSWORD),
                                     account("bind", "--tid", "2", "--user", "u1")]


def test_set_chap_refuses_a_user_whose_password_one_iscsi_does_not_know(targets, recorder):
    on_tgtd(recorder, (2, IQN), (3, IQN_6, (), (), ("ALL",), ("u1",)), accounts=("u1",))
    saved_as(recorder, TargetSpec(IQN, ()))
    with pytest.raises(OneIscsiError, match=f"CHAP user u1 on tgt1 is bound to target {IQN_6} \\(TID 3\\) on tgt1 "
                                            "with a password one-iscsi does not know: choose another user"):
        targets.set_chap("2", "u1", PASSWORD)
    assert recorder.argvs() == [SHOW, cat(IQN), SHOW_ACCOUNTS, cat(IQN_6)]


@pytest.mark.parametrize("user, password, message", [
    ("", PASSWORD, "CHAP needs a user and a password"),
    ("u1", "", "CHAP needs a user and a password"),
    ("u1`id`", PASSWORD, "CHAP user must be up to 255"),
    ("u1", "short", "CHAP password must be 12 to 16"),
    ("u1", "pass$(touch x)12", "CHAP password must be 12 to 16"),
])
def test_set_chap_of_bad_values_runs_nothing_and_never_shows_the_password(targets, recorder, user, password,
                                                                         message):
    with pytest.raises(InvalidInput, match=message.replace("$", "\\$")) as refused:
        targets.set_chap("2", user, password)
    assert not password or password not in str(refused.value)
    assert recorder.calls == []


def test_set_chap_takes_back_what_it_did_when_the_file_cannot_be_written(targets, recorder):
    on_tgtd(recorder, (2, IQN, (), (), ("ALL",), ("old",)))
    saved_as(recorder, TargetSpec(IQN, (), ("ALL",), "old", "old-password-1"))
    recorder.fail("mv", "-f", stderr="mv: cannot move: Read-only file system")
    with pytest.raises(OneIscsiError, match="writing the target's config file failed"):
        targets.set_chap("2", "u1", PASSWORD)
    assert recorder.argvs()[-3:] == [account("bind", "--tid", "2", "--user", "old"),
                                     account("unbind", "--tid", "2", "--user", "u1"),
                                     account("delete", "--user", "u1")]


def test_unset_chap_unbinds_the_accounts_and_saves(targets, recorder, monkeypatch):
    on_tgtd(recorder, (2, IQN, (), (), ("ALL",), ("u1",)))
    saved_as(recorder, TargetSpec(IQN, (), ("ALL",), "u1", PASSWORD))
    files = written(recorder, monkeypatch)
    assert targets.unset_chap("2") == []
    assert recorder.argvs() == [SHOW, cat(IQN), account("unbind", "--tid", "2", "--user", "u1"), *saved()]
    assert files() == [TargetSpec(IQN, (), ("ALL",), tid=2)]


def test_unset_chap_of_a_target_without_chap_changes_nothing(targets, recorder):
    on_tgtd(recorder, (2, IQN))
    saved_as(recorder, TargetSpec(IQN, ()))
    assert targets.unset_chap("2") == [f"{IQN} has no CHAP account: nothing changed"]
    assert recorder.argvs() == [SHOW, cat(IQN)]


CHANGES = {  # arguments of each change of target 3 of SHOWN
    "add_lun": ("3", "/dev/x", 3),
    "remove_lun": ("3", 2),
    "allow_initiators": ("3", ["10.0.0.9"]),
    "deny_initiators": ("3", ["127.0.0.1"]),
    "set_chap": ("3", "joe", PASSWORD),
    "unset_chap": ("3",),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_target_one_iscsi_did_not_make_is_changed_only_when_forced_and_then_in_tgtd_only(
        targets, unsaved, change, monkeypatch):
    with pytest.raises(OneIscsiError) as refused:
        getattr(targets, change)(*CHANGES[change])
    assert str(refused.value) == (f"target {LISTED_50} (TID 3) on tgt1 was not made by one-iscsi "
                                  f"(no {conf(LISTED_50)}): use --force to change it anyway")
    assert unsaved.argvs() == [SHOW, cat(LISTED_50)]
    monkeypatch.setattr(TargetServer, "_password_of", lambda *args: (PASSWORD, "the test"))
    notes = getattr(targets, change)(*CHANGES[change], force=True)
    assert notes == [f"{LISTED_50} is not one-iscsi's: changed in tgtd only, its own configuration is not"]
    changed = unsaved.argvs()[2:]
    assert [argv for argv in changed if argv[0] == "tgtadm" and "show" not in argv]
    assert not [argv for argv in changed if argv[0] in ("dd", "mv", "rm")]


def test_a_saved_file_not_in_the_form_one_iscsi_writes_is_named(targets, shown):
    shown.answer("cat", "--", conf(LISTED_50), out=f"<target {LISTED_50}>\n    write-cache off\n</target>\n")
    with pytest.raises(OneIscsiError) as refused:
        targets.allow_initiators("3", ["10.0.0.9"])
    assert str(refused.value) == (f"{conf(LISTED_50)}: line 2: unknown directive 'write-cache' "
                                  "(not in the form one-iscsi writes: mend or remove it)")
    assert refused.value.exit_code == 1
