"""The target commands on LIO (liotargets.py) against a recording Runner:
the requests sent to lioprogram.py, the answers read in tgt's shape, and
what is refused before anything runs."""
import ast
import json

import pytest

from oneiscsi import liotargets
from oneiscsi.errors import InvalidInput, NotFound, OneIscsiError
from support.recording import Recorder, make_config

BASE = "iqn.2012-02.org.opennebula"
IQN = f"{BASE}:lio1.vg-one.lv-one-7"
OTHER = "iqn.2003-01.org.example:other"


def described(iqn, path="/dev/vg-one/lv-one-7", sessions=()):
    return {"iqn": iqn, "luns": [{"lun": 1, "path": path, "size": 8 << 20, "plugin": "block"}], "acl": ["ALL"],
            "chap_user": "", "sessions": [{"initiator": name, "addresses": []} for name in sessions]}


def lio_server(*answers: dict) -> tuple[Recorder, liotargets.LioServer]:
    """A LIO target server answering the program's runs with answers, in order."""
    recorder = Recorder(make_config(HOST="lio1", TARGET="lio"))
    for answer in reversed(answers):  # the newest rule answers first, once
        recorder.answer("python3", "-", out=json.dumps(answer), times=1)
    runner = recorder.runner("lio1")
    return recorder, liotargets.LioServer(runner.session().__enter__())


def requests(recorder: Recorder) -> list[dict]:
    return [json.loads(ast.parse(cmd.input.rstrip().splitlines()[-1]).body[0].value.args[0].value)
            for cmd in recorder.commands if cmd.argv[:2] == ("python3", "-")]


def test_list_reads_every_target_in_tgts_shape_and_tells_one_iscsis():
    recorder, server = lio_server({"targets": [described(OTHER, "/dev/vg-one/other"), described(IQN)]})
    listed = server.overview()
    assert [(entry.target.iqn, entry.managed) for entry in listed] == [(OTHER, False), (IQN, True)]  # by name
    data = listed[1].as_dict()
    assert (data["tid"], data["luns"][0]["size_mib"], data["acl"]) == (None, 8, ["ALL"])
    assert [request["op"] for request in requests(recorder)] == ["list"]


def test_a_target_is_one_iscsis_by_its_name():
    _, server = lio_server({"target": described(IQN, "/dev/vg-one/lv-one-8")},
                           {"target": described("iqn.2012-02.org.opennebula:nohost")})
    assert server.overview(IQN)[0].managed is True
    assert server.overview("iqn.2012-02.org.opennebula:nohost")[0].managed is False


@pytest.mark.parametrize("command", ["show", "delete"])
def test_a_tid_is_refused_before_anything_runs(command):
    recorder, server = lio_server()
    with pytest.raises(InvalidInput, match="LIO has no TIDs"):
        server.overview("3") if command == "show" else server.delete_and_forget("3")
    assert recorder.calls == []


def test_delete_refuses_a_target_one_iscsi_did_not_make_unless_forced():
    recorder, server = lio_server({"target": described(OTHER, "/dev/vg-one/other")})
    with pytest.raises(OneIscsiError, match=f"target {OTHER} on lio1 was not made by one-iscsi"):
        server.delete_and_forget(OTHER)
    assert requests(recorder) == []  # refused by its name, before anything runs
    recorder, server = lio_server({"deleted": True})
    server.delete_and_forget(OTHER, force=True)
    assert [(r["op"], r.get("force", False)) for r in requests(recorder)] == [("delete", True)]


def test_delete_of_a_missing_target_says_so():
    _, server = lio_server({"error": f"no target {IQN}", "kind": "missing"})
    with pytest.raises(NotFound, match=f"no target {IQN} on lio1"):
        server.delete_and_forget(IQN)


def test_restore_asks_for_one_iscsis_targets_only():
    recorder, server = lio_server({"restored": [IQN], "present": [], "failed": [[OTHER, "no such device"]]})
    assert server.restore() == ([IQN], [], [(OTHER, "no such device")])
    [request] = requests(recorder)
    assert (request["op"], request["prefix"]) == ("restore", f"{BASE}:")


def change_of(recorder) -> dict:
    [request] = [r for r in requests(recorder) if r["op"] == "change"]
    return request


def test_new_makes_the_target_with_its_portal_and_prints_its_iqn():
    recorder, server = lio_server({"target": described(IQN), "notes": []})
    assert server.create(IQN) == (IQN, True)
    request = change_of(recorder)
    assert (request["iqn"], request["edits"], request["portal"]) == (IQN, [["new"]], ["0.0.0.0", 3260])
    with pytest.raises(InvalidInput, match="LIO has no TIDs"):
        server.create(IQN, 3)


def test_initiators_are_names_or_all_alone_and_addresses_are_refused_before_anything_runs():
    recorder, server = lio_server({"target": described(IQN)}, {"target": described(IQN), "notes": []})
    server.allow_initiators(IQN, ["iqn.1993-08.org.debian:01:node1"])
    assert change_of(recorder)["edits"] == [["allow", ["iqn.1993-08.org.debian:01:node1"]]]
    for wanted, message in ((["10.0.0.5"], "LIO admits initiators by name only: 10.0.0.5"),
                            (["ALL", "iqn.1993-08.org.debian:01:node1"], "ALL stands alone"),
                            (["iqn.x;reboot"], "initiator must be")):
        recorder, server = lio_server()
        with pytest.raises(InvalidInput, match=message):
            server.allow_initiators(IQN, wanted)
        assert recorder.calls == []


def test_chap_password_goes_on_stdin_only_and_is_checked_first():
    recorder, server = lio_server({"target": described(IQN)}, {"target": described(IQN), "notes": []})
    server.set_chap(IQN, "one", "secret-pass-12")
    [command] = [cmd for cmd in recorder.commands if '"op": "change"' in (cmd.input or "")]
    assert "secret-pass-12" not in " ".join(command.argv)  # on stdin only, never in ps
    assert change_of(recorder)["edits"] == [["chap", "one", "secret-pass-12"]]
    recorder, server = lio_server()
    with pytest.raises(InvalidInput, match="CHAP password"):
        server.set_chap(IQN, "one", "short")
    assert recorder.calls == []


def test_lun_bind_names_the_storage_object_after_the_device():
    recorder, server = lio_server({"target": described(IQN)}, {"target": described(IQN), "notes": []})
    server.add_lun(IQN, "/dev/vg-one/lv-one-9", 2, force=True)
    request = change_of(recorder)
    assert (request["edits"], request["force"]) == ([["lun_add", 2, "/dev/vg-one/lv-one-9", "vg-one.lv-one-9"]], True)
    recorder, server = lio_server()
    with pytest.raises(InvalidInput, match="backing store must"):
        server.add_lun(IQN, "/dev/vg one/x")
    assert recorder.calls == []


def test_changes_of_a_target_one_iscsi_did_not_make_need_force():
    recorder, server = lio_server({"target": described("iqn.2003-01.org.example:other")})
    with pytest.raises(OneIscsiError, match="was not made by one-iscsi: use --force"):
        server.remove_lun("iqn.2003-01.org.example:other", 1)
    assert requests(recorder) == []


def test_names_with_capitals_are_refused_on_lio_before_anything_runs():
    """LIO keeps names in lower case: one with capitals would never be found again."""
    recorder, server = lio_server()
    with pytest.raises(InvalidInput, match="LIO keeps names in lower case: target name"):
        server.create("iqn.2012-02.org.opennebula:Host.vg-one.lv-one-7")
    with pytest.raises(InvalidInput, match="initiator name iqn.1993-08.org.debian:01:Node1 has capitals"):
        server.allow_initiators(IQN, ["iqn.1993-08.org.debian:01:Node1"])
    assert recorder.calls == []


def test_a_dry_run_shows_the_change_and_reads_no_answer():
    recorder = Recorder(make_config(HOST="lio1", TARGET="lio"), dry_run=True)
    recorder.answer("python3", "-", out=json.dumps({"target": described(IQN)}), stdin='"op": "show"')
    with recorder.runner("lio1").session() as session:
        server = liotargets.LioServer(session)
        assert server.allow_initiators(IQN, ["ALL"]) == []
        server.delete_and_forget(IQN)
    assert requests(recorder) == []  # the changes only shown, not run
