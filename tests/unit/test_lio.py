"""oneiscsi/lio.py: the requests sent to lioprogram.py and how its answers
are read. The program itself runs against the kernel's LIO in the guest
tier (tests/e2e/test_guest_lio.py); here it runs only where rtslib is
missing, which it must say."""
import ast
import json
import subprocess
import sys

import pytest

from oneiscsi import lio
from oneiscsi.errors import InvalidInput, NotFound, OneIscsiError
from oneiscsi.tgtconf import TargetSpec

IQN = "iqn.2012-02.org.opennebula:lio1.vg-one.lv-one-7"
DEVICE = "/dev/vg-one/lv-one-7"


def request_of(cmd) -> dict:
    """The request a command's input ends with: main('<json>')."""
    call = ast.parse(cmd.input.rstrip().splitlines()[-1]).body[0].value
    assert call.func.id == "main"
    return json.loads(call.args[0].value)


def test_create_sends_the_program_and_the_request_on_stdin_only():
    spec = TargetSpec(IQN, (DEVICE,), ("ALL",), "chapuser", "chap-secret-123")
    cmd = lio.create(spec, 3260, 60)
    assert cmd.argv == ("python3", "-") and cmd.privileged and not cmd.query
    assert cmd.input.startswith(lio.program())
    assert lio.REFUSED_RC in cmd.accept
    assert request_of(cmd) == {
        "op": "change", "iqn": IQN, "portal": ["0.0.0.0", 3260], "lock_timeout": 60, "force": False,
        "persist": True, "save": lio.SAVE_FILE, "lock": lio.LOCK_FILE,
        "edits": [["new"], ["chap", "chapuser", "chap-secret-123"], ["lun_add", 1, DEVICE, "vg-one.lv-one-7"],
                  ["allow", ["ALL"]]]}


def test_create_without_chap_lets_in_the_initiators_named_once_the_lun_is_there():
    spec = TargetSpec(IQN, ("/srv/one-iscsi/vg-one/lv-one-7",), ("iqn.1993-08.org.debian:01:a",
                                                                 "iqn.1993-08.org.debian:01:b"))
    request = request_of(lio.create(spec, 3261, 5))
    assert (request["edits"], request["portal"], request["lock_timeout"]) == (
        [["new"], ["lun_add", 1, "/srv/one-iscsi/vg-one/lv-one-7", "vg-one.lv-one-7"],
         ["allow", ["iqn.1993-08.org.debian:01:a", "iqn.1993-08.org.debian:01:b"]]], ["0.0.0.0", 3261], 5)


def test_an_address_in_initiators_is_refused_before_anything_is_made():
    spec = TargetSpec(IQN, (DEVICE,), ("10.0.0.0/24", "iqn.1993-08.org.debian:01:a"))
    with pytest.raises(InvalidInput, match="LIO admits initiators by name only: 10.0.0.0/24"):
        lio.create(spec, 3260, 60)


def test_delete_and_show_requests():
    assert request_of(lio.delete(IQN, [DEVICE], "block"))["objects"] == [["block", "vg-one.lv-one-7"]]
    assert request_of(lio.delete(IQN, force=True))["force"] is True
    show = lio.show(IQN)
    assert show.query and request_of(show) == {"op": "show", "iqn": IQN, "save": lio.SAVE_FILE,
                                               "lock": lio.LOCK_FILE, "secrets": False}
    assert request_of(lio.show(IQN, secrets=True))["secrets"] is True


def test_hostile_values_stay_data():
    """A quote or a line break in a value cannot end the request's string:
    the request is a Python literal of the JSON text."""
    hostile = "x'); import os; os.system('touch /tmp/pwned'); ('\n"
    cmd = lio.create(TargetSpec(IQN, (DEVICE,), ("ALL",), "u", hostile), 3260, 60)
    assert request_of(cmd)["edits"][1] == ["chap", "u", hostile]
    assert len(ast.parse(cmd.input.rstrip().splitlines()[-1]).body) == 1


def test_answers_and_refusals():
    assert lio.answer('{"deleted": true}\n', "lio1") == {"deleted": True}
    with pytest.raises(NotFound, match=f"no target {IQN} on lio1"):
        lio.answer(json.dumps({"error": f"no target {IQN}", "kind": "missing"}), "lio1")
    with pytest.raises(OneIscsiError, match="LIO on lio1: target .* is in use by iqn.x"):
        lio.answer(json.dumps({"error": f"target {IQN} is in use by iqn.x", "kind": "busy"}), "lio1")
    with pytest.raises(OneIscsiError, match="unexpected answer of LIO on lio1: 'Traceback"):
        lio.answer("Traceback (most recent call last):\n", "lio1")


def test_a_described_target_reads_as_tgts_shape():
    described = {"iqn": IQN, "luns": [{"lun": 1, "path": DEVICE, "name": "vg-one.lv-one-7", "plugin": "block"}],
                 "acl": ["ALL"], "chap_user": "chapuser",
                 "sessions": [{"initiator": "iqn.1993-08.org.debian:01:a", "addresses": ["10.0.2.2"]}]}
    target = lio.target(described)  # LIO has no TIDs: None
    assert (target.tid, target.iqn, [lun.backing_store for lun in target.luns]) == (None, IQN, [DEVICE])
    assert (target.acl, target.accounts, target.initiators) == (("ALL",), ("chapuser",),
                                                                ["iqn.1993-08.org.debian:01:a"])
    assert lio.found(json.dumps({"target": described}), "lio1") == target
    assert lio.found(json.dumps({"error": "no target", "kind": "missing"}), "lio1") is None


def test_kind_and_exported_check():
    assert (lio.storage_kind("lvm"), lio.storage_kind("file")) == ("block", "fileio")
    check = lio.exported(IQN)
    assert check.argv == ("test", "-d", f"/sys/kernel/config/target/iscsi/{IQN}/tpgt_1/lun/lun_1")
    assert check.query and not check.privileged


def test_object_name_is_the_volumes():
    assert lio.object_name("/dev/vg-one/lv-one-7") == "vg-one.lv-one-7"
    assert lio.object_name("/srv/one-iscsi/vg-one/lv-one-7") == "vg-one.lv-one-7"


def test_the_program_says_when_rtslib_is_missing():
    """This machine has no python3-rtslib-fb: the program's own answer."""
    cmd = lio.show(IQN)
    done = subprocess.run([sys.executable, "-I", "-"], input=cmd.input, capture_output=True, text=True,
                          timeout=60)
    if done.returncode == 0:
        pytest.fail(f"expected a refusal, got {done.stdout}")
    answer = json.loads(done.stdout)
    assert done.returncode == lio.REFUSED_RC and answer["kind"] in ("missing", "failed"), done.stdout
