"""Signals and lost connections in the middle of an action, against the real
tgtd and sshd: what oned does to a driver it gives up on (SIGTERM), Ctrl-C
(SIGINT), a closed terminal (SIGHUP), and an ssh connection that dies.

The image comes from an HTTP server that sends part of it and then waits, so
the copy is caught in its middle without sleeping: the test polls until the
target exists, the image writer runs and the server is waiting, then strikes. The
action must exit 128+n (1 for a lost connection) with the ERROR block naming
the signal, and leave no target, volume, config file or process behind.
"""
import os
import signal
import subprocess

import pytest

from support.commands import processes
from support.driver import action_xml, error_block, start_remote
from support.http_server import stalling_http_server
from support.paths import BIN, DATA
from support.wait import wait_for

MIB = 1024 * 1024
IQN = "iqn.2012-02.org.opennebula:{}.vg-one.lv-one-{}"


@pytest.fixture
def datastore(tmp_path, tgtd, sshd, monkeypatch):
    """The file backend; over ssh unless the host is localhost."""
    monkeypatch.setenv("ONE_ISCSI_SSH", sshd.ssh)
    pool = tmp_path / "pool"

    def template(host: str) -> dict:
        return {"BACKEND": "file", "POOL_DIR": str(pool), "HOST": host}

    template.pool = pool
    template.conf_dir = tmp_path / "tgt-conf.d" / "one-iscsi"
    return template


def nothing_left(tgtd, datastore, device: str) -> None:
    assert tgtd.target_ids() == []
    assert not any(datastore.pool.rglob("lv-one-*"))
    assert not datastore.conf_dir.exists() or not any(datastore.conf_dir.glob("*.conf"))
    wait_for(lambda: not processes(f"image-writer {device}"), what="the image writer to end")


@pytest.mark.parametrize("host", ["localhost", "tgtserver"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_mid_copy_undoes_everything(signum, host, datastore, tgtd):
    image_id = 40 + signum
    device = str(datastore.pool / "vg-one" / f"lv-one-{image_id}")
    with stalling_http_server(os.urandom(8 * MIB), stall_at=3 * MIB) as server:
        cp = start_remote("datastore", "cp", action_xml({"PATH": server.url()}, {}, datastore(host)), str(image_id))
        try:
            wait_for(lambda: server.stalled and tgtd.target_ids() and processes(f"image-writer {device}"),
                     timeout=30, what="the copy to be under way")
            cp.send_signal(signum)
            out, err = cp.communicate(timeout=60)
        finally:
            cp.kill()
    assert cp.returncode == 128 + signum, err
    assert out == ""
    assert error_block(err) == (f"interrupted by {signum.name} while copying {server.url()} to {device} "
                                f"on {host}")
    nothing_left(tgtd, datastore, device)


@pytest.mark.parametrize("host", ["localhost", "tgtserver"])
def test_ctrl_c_mid_image_copy_says_the_device_is_half_written(host, datastore, tgtd, tmp_path):
    device = tmp_path / "device"
    device.write_bytes(b"\xa5" * (8 * MIB))
    with stalling_http_server(os.urandom(8 * MIB), stall_at=3 * MIB) as server:
        copy = subprocess.Popen([str(BIN / "one-iscsi"), "-H", host, "image", "copy", server.url(), str(device)],
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: server.stalled and processes(f"image-writer {device}"),
                     timeout=30, what="the copy to be under way")
            copy.send_signal(signal.SIGINT)
            out, err = copy.communicate(timeout=60)
        finally:
            copy.kill()
    assert (copy.returncode, out) == (130, "")
    assert err == (f"one-iscsi: error: interrupted by SIGINT while writing {server.url()}; {device} on {host} "
                   "is half written: its old content is gone, write it again\n")
    wait_for(lambda: not processes(f"image-writer {device}"), what="the image writer to end")


def test_a_connection_lost_mid_copy_undoes_everything_over_a_new_one(datastore, tgtd):
    image_id = 61
    device = str(datastore.pool / "vg-one" / f"lv-one-{image_id}")
    with stalling_http_server(os.urandom(8 * MIB), stall_at=3 * MIB) as server:
        cp = start_remote("datastore", "cp", action_xml({"PATH": server.url()}, {}, datastore("tgtserver")),
                   str(image_id))
        try:
            wait_for(lambda: server.stalled and processes(f"image-writer {device}"),
                     timeout=30, what="the copy to be under way")
            for pid in ssh_children(cp.pid):
                os.kill(pid, signal.SIGKILL)  # the connection carrying the data (the session's own) dies
            server.release.set()
            out, err = cp.communicate(timeout=60)
        finally:
            cp.kill()
    assert cp.returncode == 1, err
    assert error_block(err).startswith(f"copying {server.url()} to {device} failed on tgtserver: ssh failed on tgtserver (exit -9): killed by SIGKILL")
    nothing_left(tgtd, datastore, device)


def ssh_children(parent: int) -> list[int]:
    """The ssh processes started by the process parent."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except (OSError, ValueError):
            continue
        name, ppid = stat[stat.index("(") + 1:stat.rindex(")")], int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == parent and name == "ssh":
            found.append(int(entry))
    return found


@pytest.fixture
def initiator(tmp_path, sshd, tgtd, monkeypatch):
    """node1 over the real sshd, with the fake iscsiadm of tests/data (this
    kernel has no iSCSI initiator): logins succeed, but no device ever
    appears in DEVICE_DIR, so tm ln waits."""
    state = tmp_path / "initiator"
    (state / "luns").mkdir(parents=True)
    for key, value in {"SSH": sshd.ssh, "ISCSIADM": f"{DATA / 'fake-iscsiadm'} {state}", "SUDO": "",
                       "DEVICE_DIR": str(tmp_path / "no-devices"), "DEVICE_TIMEOUT": "120",
                       "NO_ISCSI": "front-end"}.items():
        monkeypatch.setenv(f"ONE_ISCSI_{key}", value)
    (tmp_path / "no-devices").mkdir()
    return state


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_while_waiting_for_the_device_logs_out_and_stops_the_wait(signum, initiator, tmp_path):
    iqn = IQN.format("tgtserver", 5)
    (initiator / "luns" / iqn).write_text(str(tmp_path / "lun"))
    disk = tmp_path / "vms" / "3" / "disk.0"
    ln = start_remote("tm", "ln", iqn, f"node1:{disk}", "3", "0")
    try:
        wait_for(lambda: processes(f"wait-and-link {tmp_path / 'no-devices'}"), timeout=30,
                 what="the wait for the device")
        assert os.listdir(initiator / "node1" / "sessions") == [iqn]
        ln.send_signal(signum)
        out, err = ln.communicate(timeout=60)
    finally:
        ln.kill()
    assert ln.returncode == 128 + signum, err
    assert error_block(err) == f"interrupted by {signum.name}"
    assert os.listdir(initiator / "node1" / "sessions") == []
    assert os.listdir(initiator / "node1" / "nodes") == []
    wait_for(lambda: not processes(f"wait-and-link {tmp_path / 'no-devices'}"), timeout=10,
             what="the wait loop on the host to end")
    assert not os.path.lexists(disk)
