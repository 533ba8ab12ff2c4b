"""lioprogram.py's own logic that needs no kernel: reading the saved
configuration and rewriting only the entries at hand, on a saveconfig.json
and answers captured from the guest tier's LIO (tests/data/lio: targets
lv-one-70, open to ALL with a session, and lv-one-71, two node ACLs with
CHAP; and an admin's own target made with targetcli, not saved). This
machine's kernel has no LIO: what needs rtslib runs in the guest tier."""
import json
import os
import shutil
import stat

import pytest

from oneiscsi import lio, lioprogram
from oneiscsi.liotargets import LioServer
from support.paths import DATA
from support.recording import Recorder, make_config

CAPTURED = DATA / "lio"
BASE = "iqn.2012-02.org.opennebula:guest.vg-lio"
NAMED, CHAP = f"{BASE}.lv-one-70", f"{BASE}.lv-one-71"
OTHER = "iqn.2003-01.org.example:other"


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "saveconfig.json"
    shutil.copy(CAPTURED / "saveconfig.json", path)
    return path


def test_the_inventory_reads_each_saved_target_with_the_devices_of_its_luns(saved):
    answer = lioprogram.inventory({"save": str(saved)})  # no LIO here: no live target
    assert answer == {"targets": [], "saved": {NAMED: ["/dev/vg-lio/lv-one-70"], CHAP: ["/dev/vg-lio/lv-one-71"]}}


def test_a_save_rewrites_only_the_entries_at_hand_atomically_and_privately(saved, tmp_path):
    before = json.loads(saved.read_text())
    request = {"save": str(saved), "lock": str(tmp_path / "targetcli.lock"), "lock_timeout": 5}
    with lioprogram.Saved(request) as config:
        config.replace(CHAP, {("block", "vg-lio.lv-one-71")})
    after = json.loads(saved.read_text())
    assert [target["wwn"] for target in after["targets"]] == [NAMED]
    assert [so["name"] for so in after["storage_objects"]] == ["vg-lio.lv-one-70"]
    assert after["targets"][0] == next(t for t in before["targets"] if t["wwn"] == NAMED)  # kept as it was
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["saveconfig.json", "targetcli.lock"]  # no temporary file left


def test_a_saved_file_that_is_not_json_is_refused_with_its_name(tmp_path):
    path = tmp_path / "saveconfig.json"
    path.write_text("{broken")
    with pytest.raises(lioprogram.Refused, match=f"{path} is not JSON"):
        lioprogram.load(str(path))


def test_described_targets_read_in_tgts_shape():
    in_use = lio.found((CAPTURED / "show-in-use.json").read_text(), "guest")
    assert (in_use.tid, in_use.acl, in_use.initiators) == (None, ("ALL",), ["iqn.1993-08.org.debian:01:one-iscsi-e2e"])
    assert [(lun.lun, lun.backing_store, lun.size_mib) for lun in in_use.luns] == [(1, "/dev/vg-lio/lv-one-70", 8)]
    with_chap = lio.found((CAPTURED / "show-chap.json").read_text(), "guest")
    assert (with_chap.acl, with_chap.accounts) == (
        ("iqn.2008-11.org.linux-kvm", "iqn.1993-08.org.debian:01:node1"), ("cap-user",))


def test_the_listing_tells_one_iscsis_targets_from_an_admins():
    recorder = Recorder(make_config(HOST="guest", TARGET="lio"))
    recorder.answer("python3", "-", out=(CAPTURED / "list.json").read_text())
    with recorder.runner("guest").session() as session:
        listed = LioServer(session).overview()
    assert [(entry.target.iqn, entry.managed, entry.as_dict()["tid"]) for entry in listed] == [
        (OTHER, False, None), (NAMED, True, None), (CHAP, True, None)]


def test_status_on_lio_reads_the_captured_inventory():
    from oneiscsi import inventory

    recorder = Recorder(make_config(HOST="guest", TARGET="lio", VG_NAME="vg-lio", BACKEND="lvm"))
    recorder.answer("python3", "-", out=(CAPTURED / "inventory.json").read_text())
    recorder.answer("lvs", "lv_name,lv_size", out="  lv-one-70:8388608\n  lv-one-71:8388608\n  other:4194304\n")
    recorder.answer("stat", "-L", out="/dev/vg-lio/lv-one-70\n/dev/vg-lio/lv-one-71\n/dev/vg-lio/other\n")
    found = {entry.name: entry for entry in inventory.status(recorder.cfg, recorder.runner("guest"))}
    assert {name: (entry.state, entry.flags, len(entry.target.sessions)) for name, entry in found.items()} == {
        "lv-one-70": ("ok", (), 1), "lv-one-71": ("ok", (), 0),
        OTHER: ("foreign", (), 0)}  # its LUN is 0, targetcli's first


def test_the_saved_configuration_waits_for_targetclis_lock_within_its_bound(saved, tmp_path):
    """targetcli (here: another open file of the same lock) holds the lock:
    the program gives up after lock_timeout, and gets it once it is free."""
    import fcntl

    lock = tmp_path / "targetcli.lock"
    request = {"save": str(saved), "lock": str(lock), "lock_timeout": 0.2}
    with open(lock, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(lioprogram.Refused, match=f"{lock} is held for more than 0.2 s"):
            with lioprogram.Saved(request):
                pass
    with lioprogram.Saved(request) as config:
        assert [target["wwn"] for target in config.config["targets"]] == [NAMED, CHAP]
