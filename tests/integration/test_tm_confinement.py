"""Transfer actions stay inside the path they are given, over a real loopback
sshd: canary files outside the VM directory prove that nothing there was
touched. As in test_tm_remotes, iscsiadm is tests/data/fake-iscsiadm (the
kernel here has no iSCSI initiator), with its by-path links pointing at plain
files of the test; ssh, the shell on the host, links and directories are real.
"""
import os
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from support.driver import error_block, remote
from support.paths import BIN, DATA
from support.wait import wait_for

IQN = "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-{}"


@pytest.fixture
def host(sshd, tmp_path, monkeypatch):
    """node1 over the loopback sshd, a VM directory on it, and canaries outside."""
    state = tmp_path / "initiator"
    (state / "luns").mkdir(parents=True)
    for key, value in {"SSH": sshd.ssh, "ISCSIADM": f"{DATA / 'fake-iscsiadm'} {state}", "SUDO": "",
                       "DEVICE_DIR": str(state / "by-path"), "NO_ISCSI": "front-end",
                       "BACKEND": "file", "POOL_DIR": str(tmp_path / "pool")}.items():
        monkeypatch.setenv(f"ONE_ISCSI_{key}", value)
    outside = tmp_path / "outside"
    (outside / "7").mkdir(parents=True)
    (outside / "canary").write_text("keep")
    (outside / "7" / "canary").write_text("keep")

    class Host:
        datastore = tmp_path / "datastores" / "0"
        vm_dir = datastore / "7"
        devices = tmp_path / "devices"

        @staticmethod
        def canaries():
            return sorted(str(path.relative_to(outside)) for path in outside.rglob("canary"))

        @staticmethod
        def sessions():
            folder = state / "node1" / "sessions"
            return sorted(os.listdir(folder)) if folder.exists() else []

        @staticmethod
        def nodes():
            folder = state / "node1" / "nodes"
            return sorted(os.listdir(folder)) if folder.exists() else []

        @staticmethod
        def export(image_id):
            """A LUN whose device is a plain file: login makes its by-path link."""
            Host.devices.mkdir(exist_ok=True)
            device = Host.devices / f"lun-{image_id}"
            device.write_text(f"disk {image_id}")
            (state / "luns" / IQN.format(image_id)).write_text(str(device))
            return device

        @staticmethod
        def export_missing(image_id):
            """A LUN whose device does not exist yet: its by-path link dangles."""
            device = tmp_path / f"late-device-{image_id}"
            (state / "luns" / IQN.format(image_id)).write_text(str(device))
            return device

    Host.datastore.mkdir(parents=True)
    Host.outside = outside
    Host.state = state
    return Host


ALL_CANARIES = ["7/canary", "canary"]


def test_trailing_slash_on_a_linked_vm_directory_is_refused_and_the_link_alone_is_removed(host):
    host.vm_dir.symlink_to(host.outside, target_is_directory=True)
    refused = remote("tm", "delete", f"node1:{host.vm_dir}/", "7", "0")
    assert refused.returncode == 2
    assert error_block(refused.stderr) == (
        f"path node1:{host.vm_dir}/ ends with '/': give it without, as OpenNebula does")
    assert host.vm_dir.is_symlink() and host.canaries() == ALL_CANARIES
    done = remote("tm", "delete", f"node1:{host.vm_dir}", "7", "0")
    assert (done.returncode, done.stderr) == (0, f"INFO: delete: removed node1:{host.vm_dir}\n")
    assert not os.path.lexists(host.vm_dir)
    assert host.canaries() == ALL_CANARIES


def test_a_disk_link_to_a_directory_is_removed_not_followed(host):
    host.vm_dir.mkdir()
    disk = host.vm_dir / "disk.0"
    disk.symlink_to(host.outside, target_is_directory=True)
    assert remote("tm", "delete", f"node1:{disk}/").returncode == 2
    assert disk.is_symlink()
    done = remote("tm", "delete", f"node1:{disk}")
    assert done.returncode == 0, done.stderr
    assert not os.path.lexists(disk) and host.vm_dir.is_dir()
    assert host.canaries() == ALL_CANARIES


def test_delete_of_a_vm_directory_removes_links_in_it_not_what_they_point_at(host):
    host.vm_dir.mkdir()
    (host.vm_dir / "disk.1").symlink_to(host.outside, target_is_directory=True)
    (host.vm_dir / "context").symlink_to(host.outside / "canary")
    done = remote("tm", "delete", f"node1:{host.vm_dir}")
    assert done.returncode == 0, done.stderr
    assert not host.vm_dir.exists()
    assert host.canaries() == ALL_CANARIES


@pytest.mark.parametrize("path", ["/", "/etc", "/var", "/home", "/usr", "/var/7", "/etc/disk.0", "/run/user/0"])
def test_delete_outside_a_vm_directory_is_refused_even_in_a_dry_run(host, cli, path):
    done = remote("tm", "delete", f"node1:{path}", "7", "0")
    assert done.returncode == 2
    assert f"node1:{path}" in error_block(done.stderr)
    preview = cli("--dry-run", "tm", "delete", f"node1:{path}")
    assert preview.rc == 2
    assert preview.out == "" and "rm " not in preview.err


def test_dot_dot_out_of_the_vm_directory_is_refused(host):
    host.vm_dir.mkdir()
    escape = f"{host.vm_dir}/../../../outside/7"
    assert os.path.isdir(escape)
    done = remote("tm", "delete", f"node1:{escape}")
    assert done.returncode == 2
    assert error_block(done.stderr) == (f"path node1:{escape} has a '.' or '..' component: transfer actions "
                                        "stay inside the path they are given")
    linked = remote("tm", "ln", IQN.format(1), f"node1:{host.vm_dir}/../../../outside/7/disk.0")
    assert linked.returncode == 2
    assert host.canaries() == ALL_CANARIES and os.listdir(host.outside / "7") == ["canary"]
    assert host.nodes() == []


def test_dry_run_of_a_vm_directory_prints_the_removal_of_exactly_it(host, cli):
    host.vm_dir.mkdir()
    preview = cli("--dry-run", "tm", "delete", f"node1:{host.vm_dir}")
    assert preview.rc == 0, preview.err
    [line] = preview.out.splitlines()
    assert shlex.split(shlex.split(line)[-1]) == ["rm", "-rf", str(host.vm_dir)]
    assert host.vm_dir.is_dir()


def test_ln_onto_a_directory_is_refused_and_leaves_nothing(host):
    disk = host.vm_dir / "disk.0"
    disk.mkdir(parents=True)
    (disk / "canary").write_text("keep")
    host.export(20)
    done = remote("tm", "ln", IQN.format(20), f"node1:{disk}", "7", "0")
    assert done.returncode == 1
    assert error_block(done.stderr) == f"node1:{disk} is a directory: not linking {IQN.format(20)} there"
    assert os.listdir(disk) == ["canary"]
    assert host.sessions() == [] and host.nodes() == []
    assert not (host.state / "calls").exists()  # iscsiadm never ran


def test_delete_of_a_vm_directory_logs_out_of_its_disks_first(host):
    devices = [host.export(21), host.export(22)]
    for index, image_id in enumerate((21, 22)):
        done = remote("tm", "ln", IQN.format(image_id), f"node1:{host.vm_dir}/disk.{index}")
        assert done.returncode == 0, done.stderr
    (host.vm_dir / "deployment.0").write_text("vm")
    assert host.sessions() == [IQN.format(21), IQN.format(22)]
    done = remote("tm", "delete", f"node1:{host.vm_dir}", "7", "0")
    assert done.returncode == 0, done.stderr
    assert done.stderr == (f"INFO: delete: logged out of {IQN.format(21)} {IQN.format(22)} on node1, "
                           f"removed {host.vm_dir}\n")
    assert host.sessions() == [] and host.nodes() == []
    assert not host.vm_dir.exists()
    assert [device.read_text() for device in devices] == ["disk 21", "disk 22"]


@pytest.mark.parametrize("iqn_host, servers, message", [
    ("localhost", "tgt1 tgt2", "its host 'localhost' is not one of TARGET_SERVERS (tgt1 tgt2)"),
    ("localhost:3260", "", "its host 'localhost:3260' is not a plain host name or IPv4 address"),
])
def test_ln_logs_in_only_to_plain_allowed_target_servers(host, monkeypatch, iqn_host, servers, message):
    monkeypatch.setenv("ONE_ISCSI_TARGET_SERVERS", servers)
    iqn = f"iqn.2012-02.org.opennebula:{iqn_host}.vg-one.lv-one-23"
    (host.state / "luns" / iqn).write_text(str(host.outside / "canary"))
    done = remote("tm", "ln", iqn, f"node1:{host.vm_dir}/disk.0")
    assert done.returncode == 2
    assert error_block(done.stderr).startswith(f"IQN {iqn}: {message}")
    assert host.nodes() == [] and not host.vm_dir.exists()


def test_ln_to_an_allowed_target_server(host, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_TARGET_SERVERS", "tgt1 LOCALHOST")
    host.export(24)
    done = remote("tm", "ln", IQN.format(24), f"node1:{host.vm_dir}/disk.0")
    assert done.returncode == 0, done.stderr
    assert host.sessions() == [IQN.format(24)]


def test_user_at_host_is_judged_by_its_host_for_no_iscsi(host, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_NO_ISCSI", "node1")
    monkeypatch.setenv("ONE_ISCSI_ISCSIADM", "false")
    disk = host.vm_dir / "disk.0"
    done = remote("tm", "ln", IQN.format(25), f"root@node1:{disk}")
    assert done.returncode == 0, done.stderr
    assert os.readlink(disk) == str(Path(os.environ["ONE_ISCSI_POOL_DIR"]) / "vg-one" / "lv-one-25")
    assert remote("tm", "delete", f"root@node1:{disk}").returncode == 0
    assert not os.path.lexists(disk)


@pytest.mark.parametrize("action", ["ln", "mv", "delete"])
def test_a_huge_path_is_not_echoed_back(host, action):
    huge = f"node1:/{'a' * 120_000}"
    args = {"ln": [IQN.format(1), huge], "mv": [huge, f"node2:{host.vm_dir}/disk.0"], "delete": [huge]}[action]
    done = remote("tm", action, *args)
    assert done.returncode == 2
    assert error_block(done.stderr) == f"path node1:/{'a' * 193}… is longer than 4095 characters"
    assert len(done.stderr) < 1000


def test_wait_and_link_makes_no_link_once_its_output_is_gone(tmp_path):
    from oneiscsi.tm import WAIT_AND_LINK

    (tmp_path / "by-path").mkdir()
    (tmp_path / "by-path" / f"ip-x:3260-iscsi-{IQN.format(1)}-lun-1").write_text("device")
    argv = ["sh", "-c", WAIT_AND_LINK, "wait-and-link", str(tmp_path / "by-path"), IQN.format(1), "1"]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        dead = subprocess.run([*argv, str(tmp_path / "dead")], stdout=write_end, timeout=10)
    finally:
        os.close(write_end)
    assert dead.returncode != 0
    assert not os.path.lexists(tmp_path / "dead")
    alive = subprocess.run([*argv, str(tmp_path / "alive")], capture_output=True, timeout=10)
    assert (alive.returncode, alive.stdout) == (0, b"..")
    assert os.readlink(tmp_path / "alive").endswith(f"-iscsi-{IQN.format(1)}-lun-1")


def _processes():
    """pid -> argv of this machine's processes."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                pass
    return found


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _sshd_above(pid):
    """The nearest sshd process above pid: the one holding its connection."""
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.index("(") + 1:stat.rindex(")")].startswith("sshd"):
            return pid
        pid = int(stat.rpartition(")")[2].split()[1])
    raise AssertionError("no sshd above the wait loop")


def test_the_wait_loop_dies_with_its_connection_and_links_nothing(host, tmp_path, monkeypatch):
    """one-iscsi and its ssh are killed while the host waits for the device;
    the device then appears: the loop on the host must be gone without linking."""
    monkeypatch.setenv("ONE_ISCSI_DEVICE_TIMEOUT", "60")
    device = host.export_missing(26)
    disk = host.vm_dir / "disk.0"
    loops = []

    def waiting():
        loops[:] = [pid for pid, argv in _processes().items()
                    if "wait-and-link" in argv and str(disk) in argv and argv[0] == "sh"]
        return bool(loops)

    with open(tmp_path / "ln.err", "w") as errors:
        action = subprocess.Popen([str(BIN / "one-iscsi"), "tm", "ln", IQN.format(26), f"node1:{disk}"],
                                  stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
    try:
        wait_for(waiting, timeout=30, what="the wait loop running on node1")
        assert host.sessions() == [IQN.format(26)]
        connection = _sshd_above(loops[0])
        os.killpg(action.pid, signal.SIGKILL)
        action.wait(timeout=10)
        wait_for(lambda: not _alive(connection), what="sshd closing the dropped connection")
        device.write_text("late device")
        assert os.path.exists(host.state / "by-path" / f"ip-localhost:3260-iscsi-{IQN.format(26)}-lun-1")
        wait_for(lambda: not any(map(_alive, loops)), what="the wait loop ending")
        assert not os.path.lexists(disk)
    finally:
        if action.poll() is None:
            os.killpg(action.pid, signal.SIGKILL)
            action.wait()
        for pid in loops:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
