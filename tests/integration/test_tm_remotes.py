"""Transfer actions through the remote stubs over a real loopback sshd.

The hosts' kernels here have no iSCSI initiator, so iscsiadm is replaced where
the Runner resolves commands (ONE_ISCSI_ISCSIADM) by tests/data/fake-iscsiadm,
which keeps sessions and node records as files and makes the by-path link a
udev would make. SUDO is empty here, since sudo would drop the variable that
tells the stand-in which host it runs on (sudo over ssh is tested in
test_over_ssh). Everything else (ssh, the shell on the host, waiting for the
device, links, directories) is real; the NO_ISCSI path is real end to end."""
import os
import shlex

import pytest

from support.commands import quiet
from support.driver import action_xml, error_block, remote
from support.paths import DATA

IQN = "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-{}"


@pytest.fixture
def hosts(sshd, tgtd, tmp_path, monkeypatch):
    """node1 and node2 are ssh aliases of a loopback sshd; SSH counts sessions."""
    state = tmp_path / "initiator"
    (state / "luns").mkdir(parents=True)
    log = tmp_path / "ssh.log"
    wrapper = tmp_path / "counting-ssh"
    wrapper.write_text(  # logs the host name, the word after "--"
        f'#!/bin/sh\nprev=\nfor arg; do [ "$prev" = -- ] && echo "$arg" >> {shlex.quote(str(log))}; prev=$arg; done\n'
        f'exec {sshd.ssh} "$@"\n')
    wrapper.chmod(0o755)
    for key, value in {"SSH": str(wrapper), "ISCSIADM": f"{DATA / 'fake-iscsiadm'} {state}", "SUDO": "",
                       "DEVICE_DIR": str(state / "by-path"), "NO_ISCSI": "front-end",
                       "BACKEND": "file", "POOL_DIR": str(tmp_path / "pool")}.items():
        monkeypatch.setenv(f"ONE_ISCSI_{key}", value)

    class Hosts:
        directory = tmp_path / "datastores" / "0" / "7"
        initiator_state = state

        @staticmethod
        def sessions(host="node1"):
            folder = state / host / "sessions"
            return sorted(os.listdir(folder)) if folder.exists() else []

        @staticmethod
        def nodes(host="node1"):
            folder = state / host / "nodes"
            return sorted(os.listdir(folder)) if folder.exists() else []

        @staticmethod
        def ssh_sessions():
            return log.read_text().splitlines() if log.exists() else []

        @staticmethod
        def export(iqn, path):
            (state / "luns" / iqn).write_text(str(path))

        @staticmethod
        def calls():
            return (state / "calls").read_text().splitlines()

    return Hosts


def register(tmp_path, image_id, size=1024 * 1024):
    image = tmp_path / f"image-{image_id}.raw"
    image.write_bytes(os.urandom(size))
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, {}), str(image_id))
    assert done.returncode == 0, done.stderr
    return image, tmp_path / "pool" / "vg-one" / f"lv-one-{image_id}"


def test_ln_logs_in_waits_for_the_device_and_links_it(hosts, tmp_path):
    image, backing = register(tmp_path, 7)
    hosts.export(IQN.format(7), backing)
    disk = hosts.directory / "disk.0"
    done = remote("tm", "ln", IQN.format(7), f"node1:{disk}", "1024", "7", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == f"INFO: ln: logged in to {IQN.format(7)} on node1, linked {disk}\n"
    assert hosts.ssh_sessions() == ["node1"]
    assert hosts.sessions() == [IQN.format(7)]
    assert os.readlink(disk).endswith(f"-iscsi-{IQN.format(7)}-lun-1")
    assert disk.read_bytes()[:image.stat().st_size] == image.read_bytes()
    assert hosts.calls()[:2] == [f"-m node --targetname {IQN.format(7)} -p localhost -o new",
                                 f"-m node --targetname {IQN.format(7)} -p localhost -o update -n node.startup -v manual"]

    again = remote("tm", "ln", IQN.format(7), f"node1:{disk}")
    assert (again.returncode, again.stderr) == (
        0, f"INFO: ln: already logged in to {IQN.format(7)} on node1, linked {disk}\n")
    assert hosts.sessions() == [IQN.format(7)]
    assert disk.read_bytes()[:image.stat().st_size] == image.read_bytes()


def test_ln_without_device_times_out_and_logs_out(hosts, tmp_path, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_DEVICE_TIMEOUT", "1")
    hosts.export(IQN.format(8), tmp_path / "never-there")
    disk = hosts.directory / "disk.1"
    done = remote("tm", "ln", IQN.format(8), f"node1:{disk}")
    assert done.returncode == 1
    assert error_block(done.stderr) == (
        f"no device for {IQN.format(8)} on node1 within 1 s (DEVICE_TIMEOUT): logged out again")
    assert hosts.sessions() == [] and hosts.nodes() == []
    assert not os.path.lexists(disk)


def test_failed_ln_keeps_a_session_it_did_not_open(hosts, tmp_path, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_DEVICE_TIMEOUT", "1")
    hosts.export(IQN.format(8), tmp_path / "never-there")
    for operation in (["-o", "new"], ["--login"]):
        opened = quiet([str(DATA / "fake-iscsiadm"), str(hosts.initiator_state), "-m", "node", "--targetname",
                        IQN.format(8), "-p", "localhost", *operation], env={**os.environ, "ONE_ISCSI_TEST_HOST": "node1"})
        assert opened.returncode == 0, opened.stderr
    done = remote("tm", "ln", IQN.format(8), f"node1:{hosts.directory}/disk.1")
    assert error_block(done.stderr) == f"no device for {IQN.format(8)} on node1 within 1 s (DEVICE_TIMEOUT)"
    assert hosts.sessions() == [IQN.format(8)]


def test_ln_to_an_unknown_target_fails_cleanly(hosts):
    done = remote("tm", "ln", IQN.format(99), f"node1:{hosts.directory}/disk.0")
    assert done.returncode == 1
    assert error_block(done.stderr).startswith("iscsiadm failed on node1 (exit 19)")
    assert hosts.sessions() == [] and hosts.nodes() == []


def test_mvds_logs_out_and_forgets_the_node(hosts, tmp_path):
    _, backing = register(tmp_path, 9)
    hosts.export(IQN.format(9), backing)
    disk = hosts.directory / "disk.0"
    assert remote("tm", "ln", IQN.format(9), f"node1:{disk}").returncode == 0
    done = remote("tm", "mvds", f"node1:{disk}", IQN.format(9), "7", "0")
    assert (done.returncode, done.stderr) == (0, f"INFO: mvds: logged out of {IQN.format(9)} on node1\n")
    assert hosts.sessions() == [] and hosts.nodes() == []
    again = remote("tm", "mvds", f"node1:{disk}", IQN.format(9))
    assert (again.returncode, again.stderr) == (
        0, f"INFO: mvds: no session to {IQN.format(9)} on node1: nothing to log out\n")


def test_delete_of_a_disk_and_of_the_directory(hosts, tmp_path):
    _, backing = register(tmp_path, 10)
    hosts.export(IQN.format(10), backing)
    disk = hosts.directory / "disk.0"
    assert remote("tm", "ln", IQN.format(10), f"node1:{disk}").returncode == 0
    (hosts.directory / "deployment.0").write_text("vm")
    done = remote("tm", "delete", f"node1:{disk}")
    assert done.returncode == 0, done.stderr
    assert hosts.sessions() == [] and not os.path.lexists(disk)
    assert remote("tm", "delete", f"node1:{hosts.directory}").returncode == 0
    assert not hosts.directory.exists()
    gone = remote("tm", "delete", f"node1:{hosts.directory}")
    assert (gone.returncode, gone.stderr) == (
        0, f"INFO: delete: node1:{hosts.directory} does not exist: nothing to delete\n")


def test_mv_same_place_is_a_no_op(hosts):
    path = f"node1:{hosts.directory}/disk.0"
    done = remote("tm", "mv", path, path)
    assert (done.returncode, hosts.ssh_sessions()) == (0, [])


def test_mv_disk_between_hosts(hosts, tmp_path):
    _, backing = register(tmp_path, 11)
    hosts.export(IQN.format(11), backing)
    src = hosts.directory / "disk.0"
    dst = tmp_path / "other" / "7" / "disk.0"
    assert remote("tm", "ln", IQN.format(11), f"node1:{src}").returncode == 0
    done = remote("tm", "mv", f"node1:{src}", f"node2:{dst}")
    assert done.returncode == 0, done.stderr
    assert os.readlink(dst).endswith(f"-iscsi-{IQN.format(11)}-lun-1")
    # the source path is left as the destination has it: the system TM copies or removes its directory next
    assert os.readlink(src) == os.readlink(dst)
    assert os.readlink(src.parent / ".disk.0.iqn") == os.readlink(dst.parent / ".disk.0.iqn") == f"{IQN.format(11)}@node2"
    assert (hosts.sessions("node1"), hosts.sessions("node2")) == ([], [IQN.format(11)])
    assert (hosts.nodes("node1"), hosts.nodes("node2")) == ([], [IQN.format(11)])


def test_mv_opens_both_hosts_connections_at_once(hosts, tmp_path, monkeypatch, sshd):
    """node1's ssh waits (bounded, 20 s) until node2's has started: one
    connection after the other would run into that bound and fail."""
    _, backing = register(tmp_path, 16)
    hosts.export(IQN.format(16), backing)
    src, dst = hosts.directory / "disk.0", tmp_path / "other" / "7" / "disk.0"
    assert remote("tm", "ln", IQN.format(16), f"node1:{src}").returncode == 0
    started = shlex.quote(str(tmp_path / "node2-started"))
    waiting = tmp_path / "waiting-ssh"
    waiting.write_text(
        f'#!/bin/sh\nfor arg; do [ "$arg" = node2 ] && touch {started}; done\n'
        f'for arg; do if [ "$arg" = node1 ]; then\n'
        f'  i=0; until [ -e {started} ]; do i=$((i + 1)); [ $i -le 200 ] || exit 99; sleep 0.1; done\n'
        f'fi; done\nexec {sshd.ssh} "$@"\n')
    waiting.chmod(0o755)
    monkeypatch.setenv("ONE_ISCSI_SSH", str(waiting))
    done = remote("tm", "mv", f"node1:{src}", f"node2:{dst}")
    assert done.returncode == 0, done.stderr
    assert (hosts.sessions("node1"), hosts.sessions("node2")) == ([], [IQN.format(16)])


def test_mv_directory_between_hosts(hosts, tmp_path):
    src = tmp_path / "node1" / "0" / "7"
    (src / "sub").mkdir(parents=True)
    (src / "deployment.0").write_text("domain")
    (src / "sub" / "x").write_text("y")
    dst = tmp_path / "node2" / "0" / "7"
    done = remote("tm", "mv", f"node1:{src}", f"node2:{dst}")
    assert done.returncode == 0, done.stderr
    assert (dst / "deployment.0").read_text() == "domain" and (dst / "sub" / "x").read_text() == "y"
    assert not src.exists()


def test_mv_of_a_directory_that_is_no_vm_directory_is_refused(hosts, tmp_path):
    src = tmp_path / "precious"
    src.mkdir()
    (src / "canary").write_text("keep")
    done = remote("tm", "mv", f"node1:{src}", f"node2:{tmp_path / 'node2' / '0' / '7'}")
    assert done.returncode == 2
    assert error_block(done.stderr).startswith(f"refusing to delete node1:{src}: not a VM directory")
    assert (src / "canary").read_text() == "keep"


def test_no_iscsi_host_links_the_volume_directly(hosts, tmp_path, monkeypatch):
    """The target server as its own hypervisor: no iscsiadm at all (it is set
    to fail), the disk links the pool file itself."""
    monkeypatch.setenv("ONE_ISCSI_NO_ISCSI", "node1")
    monkeypatch.setenv("ONE_ISCSI_ISCSIADM", "false")
    image, backing = register(tmp_path, 12)
    disk = hosts.directory / "disk.0"
    done = remote("tm", "ln", IQN.format(12), f"node1:{disk}")
    assert done.returncode == 0, done.stderr
    assert os.readlink(disk) == str(backing)
    assert disk.read_bytes()[:image.stat().st_size] == image.read_bytes()
    assert remote("tm", "mvds", f"node1:{disk}", IQN.format(12)).returncode == 0
    assert remote("tm", "delete", f"node1:{disk}").returncode == 0
    assert not os.path.lexists(disk) and backing.exists()


def test_clone_is_refused_as_the_original(hosts):
    done = remote("tm", "clone", "frontend:/var/lib/one/images/x", "node1:/var/lib/one/0/7/disk.0", "7", "0")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "ERROR: clone: CLONE not supported for TM_ISCSI. Use persistent images\n"
        "ERROR MESSAGE --8<------\n"
        "CLONE not supported for TM_ISCSI. Use persistent images\n"
        "ERROR MESSAGE ------>8--\n")


def test_bad_host_path_is_refused(hosts):
    done = remote("tm", "delete", "node1-without-path")
    assert done.returncode == 2
    assert error_block(done.stderr) == "expected HOST:/PATH, got 'node1-without-path'"


def test_ln_sets_chap_on_the_node_record_and_masks_it(hosts, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("ONE_ISCSI_CHAP_USER", "oneadmin")
    monkeypatch.setenv("ONE_ISCSI_CHAP_PASSWORD", "s3cret-Pass.12")
    _, backing = register(tmp_path, 13, size=4096)
    hosts.export(IQN.format(13), backing)
    disk = hosts.directory / "disk.0"
    preview = cli("--dry-run", "tm", "ln", IQN.format(13), f"node1:{disk}")
    [line] = [line for line in preview.out.splitlines() if "auth.password" in line]
    assert shlex.split(shlex.split(line)[-1])[-4:] == ["-n", "node.session.auth.password", "-v", "********"]
    assert "s3cret" not in preview.out + preview.err
    done = remote("tm", "ln", IQN.format(13), f"node1:{disk}")
    assert done.returncode == 0, done.stderr
    record = (hosts.initiator_state / "node1" / "nodes" / IQN.format(13)).read_text().splitlines()
    assert record == ["node.startup = manual", "node.session.auth.authmethod = CHAP",
                      "node.session.auth.username = oneadmin", "node.session.auth.password = s3cret-Pass.12"]
    assert "s3cret" not in done.stdout + done.stderr


def test_ln_uses_the_configured_portal_port(hosts, tmp_path, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_PORTAL_PORT", "3261")
    _, backing = register(tmp_path, 14, size=4096)
    hosts.export(IQN.format(14), backing)
    assert remote("tm", "ln", IQN.format(14), f"node1:{hosts.directory}/disk.0").returncode == 0
    assert f"-m node --targetname {IQN.format(14)} -p localhost:3261 -o new" in hosts.calls()
    assert f"-m node --targetname {IQN.format(14)} -p localhost:3261 --login" in hosts.calls()


def test_one_ssh_session_per_host_per_action(hosts, tmp_path):
    _, backing = register(tmp_path, 15, size=4096)
    hosts.export(IQN.format(15), backing)
    src, dst = hosts.directory / "disk.0", tmp_path / "elsewhere" / "disk.0"
    steps = [("ln", [IQN.format(15), f"node1:{src}"], ["node1"]),
             ("mv", [f"node1:{src}", f"node2:{dst}"], ["node1", "node2"]),
             ("mvds", [f"node2:{dst}", IQN.format(15)], ["node2"]),
             ("delete", [f"node2:{dst}"], ["node2"])]
    for action, args, hosts_used in steps:
        before = len(hosts.ssh_sessions())
        assert remote("tm", action, *args).returncode == 0
        assert sorted(hosts.ssh_sessions()[before:]) == hosts_used, action
