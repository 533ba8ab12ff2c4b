"""One image, one owner at a time, against the real tgtd (and sshd): cp, mkfs
and rm of one image hold its lock on the target server for as long as they
work on it, and cp checks at its end that its target is still exported.

The copy is caught in its middle by an HTTP server that sends part of the
image and then waits (no sleeps: the test polls until the writer runs)."""
import os
import re

import pytest

from support.commands import processes
from support.driver import action_xml, error_block, remote, start_remote
from support.http_server import stalling_http_server
from support.wait import wait_for

MIB = 1024 * 1024
IQN = "iqn.2012-02.org.opennebula:{}.vg-one.lv-one-{}"


@pytest.fixture
def datastore(tmp_path, tgtd, sshd, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_SSH", sshd.ssh)
    monkeypatch.setenv("ONE_ISCSI_LOCK_TIMEOUT", "1")
    pool = tmp_path / "pool"

    def template(host: str) -> dict:
        return {"BACKEND": "file", "POOL_DIR": str(pool), "HOST": host}

    template.pool = pool
    return template


@pytest.mark.parametrize("host", ["localhost", "tgtserver"])
def test_rm_waits_for_the_cp_of_its_image_then_gives_up_and_touches_nothing(host, datastore, tgtd, tmp_path):
    image_id, data = 71, os.urandom(6 * MIB)
    device = datastore.pool / "vg-one" / f"lv-one-{image_id}"
    iqn = IQN.format(host, image_id)
    with stalling_http_server(data, stall_at=2 * MIB) as server:
        cp = start_remote("datastore", "cp", action_xml({"PATH": server.url()}, {}, datastore(host)), str(image_id))
        try:
            wait_for(lambda: server.stalled and processes(f"image-writer {device}"), timeout=30,
                     what="the copy to be under way")
            rm = remote("datastore", "rm", action_xml({"SOURCE": iqn}, {}, datastore(host)), str(image_id))
            assert rm.returncode == 1
            assert error_block(rm.stderr) == (f"lock {tmp_path}/one-iscsi.lock.vg-one.lv-one-{image_id} on {host} "
                                              "is held by another one-iscsi for more than 1 s (LOCK_TIMEOUT)")
            assert tgtd.target_ids() == [1] and device.exists()
            server.release.set()
            out, err = cp.communicate(timeout=60)
        finally:
            cp.kill()
    assert (cp.returncode, out) == (0, f"{iqn} 6\n"), err
    assert device.read_bytes() == data
    rm = remote("datastore", "rm", action_xml({"SOURCE": iqn}, {}, datastore(host)), str(image_id))
    assert rm.returncode == 0, rm.stderr
    assert tgtd.target_ids() == [] and not device.exists()


def test_a_cp_whose_target_vanished_during_the_copy_fails_and_leaves_nothing(datastore, tgtd, tmp_path):
    image_id = 72
    device = datastore.pool / "vg-one" / f"lv-one-{image_id}"
    iqn = IQN.format("tgtserver", image_id)
    with stalling_http_server(os.urandom(4 * MIB), stall_at=MIB) as server:
        cp = start_remote("datastore", "cp", action_xml({"PATH": server.url()}, {}, datastore("tgtserver")),
                          str(image_id))
        try:
            wait_for(lambda: server.stalled and processes(f"image-writer {device}"), timeout=30,
                     what="the copy to be under way")
            tgtd.delete_all_targets()  # what a restart of tgtd without its config does
            server.release.set()
            out, err = cp.communicate(timeout=60)
        finally:
            cp.kill()
    assert (cp.returncode, out) == (1, "")
    # the writer checks the target once the data is flushed
    assert re.fullmatch(rf"copying http://\S+ to {re.escape(str(device))} failed on tgtserver: target {re.escape(iqn)} "
                        r"\(TID \d+\) is no longer exported on tgtserver: tgtadm: can't find the target", error_block(err))
    assert tgtd.target_ids() == []
    assert not device.exists()
    conf_dir = tmp_path / "tgt-conf.d" / "one-iscsi"
    assert not any(conf_dir.glob("*.conf"))

