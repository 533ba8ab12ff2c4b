"""TargetServer against a recording session (no process is started): the
exact tgtadm and config-file commands of each operation, TID allocation and
its retry, deleting, saving and restoring targets.

The expected commands and listings are in support/expected.py."""
import pytest

from oneiscsi import tgtconf
from oneiscsi.errors import InvalidInput, NotFound, OneIscsiError
from oneiscsi.targets import NEW_TARGET_ATTEMPTS, TargetServer
from oneiscsi.tgtconf import TargetSpec
from support.expected import (ALLOWED, BASE, CHAP, CONF_DIR, INCLUDE, IQN, LISTED, LISTED_50, SHOW, SHOWN, allowed,
                              bind, chap, conf, delete_target, forget, listing, new_lun, new_target, saved, writes)
from support.recording import Recorder, make_config

@pytest.fixture
def targets(recorder):
    with recorder.runner("tgt1").session() as session:
        yield TargetServer(session)


@pytest.fixture
def shown(recorder):
    """tgtd lists the targets of SHOWN: TIDs 1, 3 and 4."""
    recorder.answer(*SHOW, out=SHOWN)
    return recorder


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


def test_new_takes_the_lowest_free_tid(targets, shown):
    assert targets.new(IQN) == (2, True)
    assert shown.argvs() == [SHOW, new_target(2)]
    assert shown.sessions == [("tgt1", False)]


def test_new_on_an_empty_tgtd_starts_at_base_tid():
    recorder = Recorder(make_config(HOST="tgt1", BASE_TID="10"))
    with recorder.runner("tgt1").session() as session:
        assert TargetServer(session).new(IQN) == (10, True)
    assert recorder.argvs() == [SHOW, new_target(10)]


def test_a_tid_taken_meanwhile_is_tried_again_after_listing_anew(targets, recorder):
    recorder.answer(*SHOW, out=SHOWN + listing((2, f"{BASE}:other.vg-one.lv-one-9")))
    recorder.answer(*SHOW, out=SHOWN, times=1)  # the first listing: TID 2 still free
    recorder.fail(*new_target(2), rc=22, stderr="tgtadm: this target already exists", times=1)
    assert targets.new(IQN) == (5, True)
    assert recorder.argvs() == [SHOW, new_target(2), SHOW, new_target(5)]


def test_new_gives_up_after_its_attempts(targets, shown):
    shown.fail("--targetname", IQN, rc=22, stderr="tgtadm: this target already exists")
    with pytest.raises(OneIscsiError, match=f"no free TID for {IQN} on tgt1 after {NEW_TARGET_ATTEMPTS} attempts"):
        targets.new(IQN)
    assert shown.argvs() == [SHOW, new_target(2)] * NEW_TARGET_ATTEMPTS


def test_new_of_an_existing_name_keeps_it(targets, shown):
    assert targets.new(LISTED_50) == (3, False)
    assert targets.new(LISTED_50, tid=3) == (3, False)
    assert shown.argvs() == [SHOW, SHOW]


@pytest.mark.parametrize("iqn, tid, message", [
    (IQN, 3, "TID 3 is already used on tgt1"),
    (LISTED, 2, f"target {LISTED} already exists on tgt1 with TID 1"),
])
def test_new_with_a_tid_that_conflicts(targets, shown, iqn, tid, message):
    with pytest.raises(OneIscsiError, match=message):
        targets.new(iqn, tid=tid)
    assert shown.argvs() == [SHOW]


def test_new_with_a_free_tid_uses_it(targets, shown):
    assert targets.new(IQN, tid=9) == (9, True)
    assert shown.argvs() == [SHOW, new_target(9)]


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


@pytest.mark.parametrize("given", ["3", LISTED_50])
def test_delete_by_tid_or_exact_name_also_forgets_the_config_file(targets, shown, given):
    targets.delete_and_forget(given)
    assert shown.argvs() == [SHOW, delete_target(3), forget(LISTED_50)]


def test_delete_with_force(targets, shown):
    targets.delete_and_forget(LISTED, force=True)
    assert shown.argvs() == [SHOW, delete_target(1, "--force"), forget(LISTED)]


def test_delete_of_a_tid_tgtd_does_not_have(targets, shown):
    shown.fail(*delete_target(9), rc=22, stderr="tgtadm: can't find the target")
    with pytest.raises(NotFound, match="no target with TID 9 on tgt1"):
        targets.delete_and_forget("9")
    assert shown.argvs() == [SHOW, delete_target(9)]


def test_delete_of_a_target_in_use_keeps_its_config_file(targets, shown):
    shown.fail(*delete_target(1), rc=22, stderr="tgtadm: this target is still active")
    with pytest.raises(OneIscsiError, match="TID 1 on tgt1 still has sessions: log the initiators out first"):
        targets.delete_and_forget(LISTED)
    assert shown.argvs() == [SHOW, delete_target(1)]


def test_delete_of_an_unknown_name(targets, shown):
    with pytest.raises(NotFound, match=f"no target named {IQN} on tgt1"):
        targets.delete_and_forget(IQN)
    assert shown.argvs() == [SHOW]


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
    spec = TargetSpec(IQN, ("/dev/a", "/dev/b"), ALLOWED, *CHAP)
    assert targets.export(spec) == (2, True)
    assert shown.argvs() == [SHOW, new_target(2), *allowed(2), new_lun(2, "/dev/a"), new_lun(2, "/dev/b", 2)]


def test_export_keeps_a_target_with_the_same_luns_and_refuses_other_luns(targets, shown):
    assert targets.export(TargetSpec(LISTED, ("/tmp/cap/a.img",))) == (1, False)
    with pytest.raises(OneIscsiError, match=f"target {LISTED} already exists on tgt1 with other LUNs"):
        targets.export(TargetSpec(LISTED, ("/tmp/cap/b.img",)))
    assert shown.argvs() == [SHOW, SHOW] * 2


FIND = ["find", CONF_DIR, "-maxdepth", "1", "-name", "*.conf", "-printf", "%f\\n"]


def saved_files(recorder, *specs: TargetSpec) -> None:
    """CONF_DIR holds the config files of specs."""
    recorder.answer(*FIND, out="".join(f"{spec.iqn}.conf\n" for spec in reversed(specs)))
    for spec in specs:
        recorder.answer("cat", "--", conf(spec.iqn), out=tgtconf.render(spec))


def cat(iqn: str) -> list[str]:
    return ["cat", "--", conf(iqn)]


def test_restore_creates_the_missing_targets_and_skips_the_present_ones(targets, shown):
    saved_files(shown, TargetSpec(IQN, ("/dev/vg-one/lv-one-7",), ALLOWED, *CHAP),
                TargetSpec(LISTED, ("/tmp/cap/a.img",)))
    assert targets.restore() == ([IQN], [LISTED], [])
    assert shown.argvs() == [FIND,
                             cat(LISTED), SHOW, SHOW,  # sorted by name: localhost before tgt1
                             cat(IQN), SHOW, new_target(2), *allowed(2), new_lun(2, "/dev/vg-one/lv-one-7")]


def test_restore_without_conf_dir_restores_nothing(targets, recorder):
    recorder.fail(*FIND, stderr=f"find: '{CONF_DIR}': No such file or directory")
    assert targets.restore() == ([], [], [])
    assert recorder.argvs() == [FIND]


IQN_8 = f"{BASE}:tgt1.vg-one.lv-one-8"
BROKEN = f"{CONF_DIR}/broken.conf"


def test_restore_reports_a_file_without_target_and_goes_on(targets, shown):
    saved_files(shown, TargetSpec(IQN_8, ("/dev/vg-one/lv-one-8",)))
    shown.answer(*FIND, out=f"broken.conf\n{IQN_8}.conf\n")
    shown.answer("cat", "--", BROKEN, out="# Written by one-iscsi\n\n")
    assert targets.restore() == ([IQN_8], [], [(BROKEN, f"{BROKEN} has no <target IQN> section")])
    assert shown.argvs() == [FIND, ["cat", "--", BROKEN],
                             cat(IQN_8), SHOW, new_target(2, IQN_8), bind(2, "address", "ALL"),
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
    (f"<target {IQN}>\n    backing-store /dev/x\n", f"<target {IQN}> has no </target>"),
    (f"<target {IQN}>\n    backing-store /dev/x\n</target>\n<target {IQN_8}>\n</target>\n",
     "line 4: a second <target> section"),
    (f"<target {IQN_8}>\n    backing-store /dev/x\n</target>\n",
     f"holds target {IQN_8}, not the one of its name"),
])
def test_restore_refuses_a_file_render_would_not_write_and_runs_nothing_for_it(targets, recorder, text, reason):
    recorder.answer(*FIND, out=f"{IQN}.conf\n")
    recorder.answer("cat", out=text)
    restored, present, [(what, message)] = targets.restore()
    assert (restored, present, what) == ([], [], conf(IQN))
    assert message.startswith(conf(IQN)) and reason in message and "\n" not in message
    assert recorder.argvs() == [FIND, cat(IQN)]


def test_restore_reports_a_present_target_with_other_luns_and_leaves_it(targets, shown):
    saved_files(shown, TargetSpec(LISTED, ("/dev/elsewhere",)))
    assert targets.restore() == ([], [], [(LISTED, f"target {LISTED} already exists on tgt1 with other LUNs")])
    assert shown.argvs() == [FIND, cat(LISTED), SHOW, SHOW]


def test_restore_deletes_a_half_made_target_and_restores_the_next_one(targets, shown):
    saved_files(shown, TargetSpec(IQN, ("/dev/vg-one/lv-one-7",)), TargetSpec(IQN_8, ("/dev/vg-one/lv-one-8",)))
    shown.fail("--mode", "logicalunit", "/dev/vg-one/lv-one-7", rc=22, stderr="tgtadm: invalid request")
    restored, present, [(what, reason)] = targets.restore()
    assert (restored, present, what) == ([IQN_8], [], IQN)
    assert reason.startswith(f"{IQN}: cannot add /dev/vg-one/lv-one-7 as LUN 1 of TID 2")
    assert shown.argvs() == [FIND,
                             cat(IQN), SHOW, new_target(2), bind(2, "address", "ALL"),
                             new_lun(2, "/dev/vg-one/lv-one-7"), delete_target(2, "--force"),
                             cat(IQN_8), SHOW, new_target(2, IQN_8), bind(2, "address", "ALL"),
                             new_lun(2, "/dev/vg-one/lv-one-8")]


def test_saved_reads_the_targets_persistence_file(targets, recorder):
    spec = TargetSpec(IQN, ("/dev/vg-one/lv-one-7",), ALLOWED, *CHAP)
    recorder.answer("cat", "--", f"{CONF_DIR}/{IQN}.conf", out=tgtconf.render(spec))
    assert targets.saved(IQN) == spec
    assert recorder.argvs() == [["test", "-e", f"{CONF_DIR}/{IQN}.conf"], ["cat", "--", f"{CONF_DIR}/{IQN}.conf"]]


def test_saved_of_a_target_without_its_file_is_not_found(targets, recorder):
    recorder.fail("test", "-e")
    with pytest.raises(NotFound) as caught:
        targets.saved(IQN)
    assert str(caught.value) == f"no saved configuration of target {IQN} on tgt1 ({CONF_DIR}/{IQN}.conf)"
    assert recorder.argvs() == [["test", "-e", f"{CONF_DIR}/{IQN}.conf"]]
