"""One error model, one handler (cli.main): known failures exit 1, bad input
2, bugs 3 with one line and the traceback in a log; driver actions also
print OpenNebula's ERROR MESSAGE block. Run in-process; nothing is started."""
import pytest

from oneiscsi import names
from oneiscsi.errors import SHOWN, CommandError, InvalidInput, OneIscsiError, StepFailed, shown
from oneiscsi.undo import Undo
from support.driver import action_xml, error_block

IQN = "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-7"


@pytest.fixture
def crash_log(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "one-iscsi" / "crash.log"


def test_a_bug_exits_3_with_one_line_and_the_traceback_in_the_log(cli, crash_log, monkeypatch):
    monkeypatch.setattr(names, "parse", lambda iqn: {}["no such key"])
    result = cli("iqn", "host", IQN)
    assert result.rc == 3
    assert result.err == (f"one-iscsi: error: unexpected KeyError: 'no such key' (details in {crash_log})\n")
    log = crash_log.read_text()
    assert "iqn host" in log and "Traceback (most recent call last)" in log and "KeyError" in log
    assert IQN not in log  # arguments are not logged: they may carry secrets


def test_a_bug_in_a_driver_action_still_gives_opennebula_its_block(cli, crash_log, monkeypatch):
    monkeypatch.setattr(names, "parse", lambda iqn: None.missing)
    result = cli("tm", "mvds", "node1:/vms/9/disk.0", IQN)
    assert result.rc == 3
    assert error_block(result.err).startswith("unexpected AttributeError:")
    assert result.err.startswith("ERROR: mvds: unexpected AttributeError")


def test_a_known_failure_of_a_driver_action_exits_1_with_the_block(cli, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_NO_ISCSI", "frontend")
    result = cli("tm", "clone", "x", "node1:/vms/9/disk.0")
    assert (result.rc, error_block(result.err)) == (1, "CLONE not supported for TM_ISCSI. Use persistent images")


def test_bad_input_to_a_driver_action_exits_2_with_the_block(cli):
    result = cli("image", "rm", action_xml({"SOURCE": IQN + ";x"}), "7")
    assert result.rc == 2
    assert "contains characters tgtd refuses" in error_block(result.err)


def test_a_step_keeps_the_exit_status_of_its_failure():
    undo = Undo("tgt1")
    with pytest.raises(StepFailed) as caught:
        undo.step("checking", lambda: (_ for _ in ()).throw(InvalidInput("bad name")))
    assert caught.value.exit_code == 2 and str(caught.value) == "checking failed on tgt1: bad name"


def test_undo_runs_newest_first_and_failed_undo_travels_with_the_error():
    done, undo = [], Undo("tgt1")
    undo.push("first", lambda: done.append("first"))
    undo.push("second", lambda: (_ for _ in ()).throw(CommandError("rm", "tgt1", 1, "rm: busy")))
    undo.push("third", lambda: done.append("third"))
    with pytest.raises(StepFailed) as caught:
        undo.step("copying", lambda: (_ for _ in ()).throw(OneIscsiError("disk full")))
    assert done == ["third", "first"]
    assert caught.value.rollback_failures == ("second: rm failed on tgt1 (exit 1): rm: busy",)
    assert str(caught.value) == ("copying failed on tgt1: disk full (and undoing it failed: "
                                 "second: rm failed on tgt1 (exit 1): rm: busy)")


def test_an_unnamed_step_raises_its_own_error_and_keep_forgets_the_undos():
    done, undo = [], Undo("node1")
    undo.push("forget", lambda: done.append("forget"))
    undo.keep()
    with pytest.raises(OneIscsiError, match="^no device$"):
        undo.step(None, lambda: (_ for _ in ()).throw(OneIscsiError("no device")))
    assert done == []


def test_an_interrupt_still_rolls_back():
    done, undo = [], Undo("tgt1")
    undo.push("volume", lambda: done.append("volume"))
    with pytest.raises(KeyboardInterrupt):
        undo.step("copying", lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert done == ["volume"]


def test_shown_caps_values_in_messages():
    assert shown("abc") == "abc"
    assert shown("x" * SHOWN) == "x" * SHOWN
    assert shown("x" * 5000) == "x" * SHOWN + "…"


def test_a_huge_argument_is_echoed_capped():
    from oneiscsi import opennebula
    from oneiscsi.run import check_host

    for refuse in (lambda: opennebula.host_path("node1" + "a" * 120_000), lambda: check_host("a;" * 60_000)):
        with pytest.raises(InvalidInput) as refused:
            refuse()
        assert len(str(refused.value)) < 300
