"""Concurrency, persistence across tgtd restarts, rollback and faults, against
a real tgtd (file backend; tests/integration/test_lvm_backend.py does the same
for LVM)."""
import concurrent.futures
import fcntl
import hashlib
import os
import signal
import subprocess

import pytest

from support.commands import quiet
from support.daemons import Tgtd
from support.driver import action_xml, error_block, random_image, read_lun, remote
from support.paths import DATA
from support.wait import wait_for

MIB = 1024 * 1024
IQN = "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-{}"


@pytest.fixture
def ds(tmp_path):
    return {"BACKEND": "file", "POOL_DIR": str(tmp_path / "pool"), "HOST": "localhost"}


def cp(path, image_id, ds, **env):
    return remote("datastore", "cp", action_xml({"PATH": str(path)}, {}, ds), str(image_id), env=env)


def rm(image_id, ds):
    return remote("datastore", "rm", action_xml({"SOURCE": IQN.format(image_id)}, {}, ds), str(image_id))


def luns(tgtd):
    """{IQN: backing store of LUN 1} of the live tgtd."""
    out = tgtd.tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target").stdout
    result, iqn = {}, None
    for line in out.splitlines():
        if line.startswith("Target "):
            iqn = line.split()[2]
        elif "Backing store path: /" in line:
            result[iqn] = line.split(": ", 1)[1]
    return result


def lock_is_free(path):
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False


def test_32_parallel_cp_get_distinct_tids_and_their_own_luns(tgtd, ds, tmp_path):
    images = [random_image(tmp_path / f"img{i}.raw", 64 * 1024 + i) for i in range(32)]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: cp(images[i], 100 + i, ds), range(32)))
    assert [r.returncode for r in results] == [0] * 32, [r.stderr for r in results if r.returncode]
    tids = tgtd.target_ids()
    assert len(tids) == 32 and len(set(tids)) == 32
    assert luns(tgtd) == {IQN.format(100 + i): str(tmp_path / "pool" / "vg-one" / f"lv-one-{100 + i}")
                          for i in range(32)}
    for i in (0, 17, 31):
        data = read_lun(tgtd, IQN.format(100 + i), tmp_path / "back.raw")
        assert data[:len(images[i].read_bytes())] == images[i].read_bytes()


def test_16_cp_and_16_rm_at_once_leave_exactly_the_expected_targets(tgtd, ds, tmp_path):
    images = [random_image(tmp_path / f"img{i}.raw", 4096) for i in range(32)]
    for i in range(16):  # the ones to remove
        assert cp(images[i], 200 + i, ds).returncode == 0
    jobs = [("rm", i) for i in range(16)] + [("cp", i) for i in range(16, 32)]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(
            lambda job: rm(200 + job[1], ds) if job[0] == "rm" else cp(images[job[1]], 200 + job[1], ds), jobs))
    assert [r.returncode for r in results] == [0] * 32, [r.stderr for r in results if r.returncode]
    assert sorted(luns(tgtd)) == sorted(IQN.format(200 + i) for i in range(16, 32))
    assert sorted(os.listdir(tmp_path / "pool" / "vg-one")) == sorted(f"lv-one-{200 + i}" for i in range(16, 32))


@pytest.fixture
def own_tgtd():
    """A tgtd of this test alone, since the test kills it."""
    from support.daemons import start_tgtd

    daemons = [start_tgtd()]
    yield daemons
    for daemon in daemons:
        if daemon.process.poll() is None:
            daemon.stop()


def restart(daemon: Tgtd) -> Tgtd:
    process = subprocess.Popen(["tgtd", "-f", "-C", str(daemon.control), "--iscsi",
                                f"portal=127.0.0.1:{daemon.port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    again = Tgtd(daemon.control, daemon.port, process)
    wait_for(lambda: f"127.0.0.1:{daemon.port}," in again.tgtadm("--op", "show", "--mode", "portal").stdout,
             what="tgtd listening again")
    return again


def test_targets_survive_a_tgtd_kill_through_restore(own_tgtd, ds, tmp_path, monkeypatch, cli):
    daemon = own_tgtd[0]
    for key, value in daemon.env.items():
        monkeypatch.setenv(key, value)
    conf_dir = tmp_path / "tgt-conf.d" / "one-iscsi"
    monkeypatch.setenv("ONE_ISCSI_CONF_DIR", str(conf_dir))
    monkeypatch.setenv("ONE_ISCSI_LOCK_FILE", str(tmp_path / "lock"))
    images = [random_image(tmp_path / f"img{i}.raw", MIB + i) for i in range(20)]
    for i, image in enumerate(images):
        assert cp(image, 300 + i, ds).returncode == 0
    assert len(os.listdir(conf_dir)) == 20
    assert {oct(os.stat(conf_dir / name).st_mode & 0o777) for name in os.listdir(conf_dir)} == {"0o600"}
    assert oct(os.stat(conf_dir).st_mode & 0o777) == "0o700"
    assert (conf_dir.parent / "one-iscsi.conf").read_text() == f"ignore-errors yes\ninclude {conf_dir}/*.conf\n"

    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait()
    daemon = restart(daemon)
    own_tgtd.append(daemon)
    assert daemon.target_ids() == []
    foreign = "iqn.2001-04.com.example:not-ours"
    assert daemon.tgtadm("--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1",
                         "-T", foreign).returncode == 0

    restored = cli("target", "restore")
    assert restored.rc == 0, restored.err
    assert restored.err.splitlines()[-1] == "20 restored, 0 already present"
    assert luns(daemon) == {IQN.format(300 + i): str(tmp_path / "pool" / "vg-one" / f"lv-one-{300 + i}")
                            for i in range(20)}
    assert foreign in daemon.tgtadm("--op", "show", "--mode", "target").stdout
    for i, image in enumerate(images):
        data = read_lun(daemon, IQN.format(300 + i), tmp_path / "back.raw")
        assert hashlib.sha256(data[:image.stat().st_size]).digest() == hashlib.sha256(image.read_bytes()).digest()
    again = cli("target", "restore")
    assert again.err.splitlines()[-1] == "0 restored, 20 already present"
    assert len(daemon.target_ids()) == 21


def test_lock_held_elsewhere_is_a_clear_error_within_the_bound(tgtd, ds, tmp_path, monkeypatch):
    lock_file = tmp_path / "one-iscsi.lock"
    monkeypatch.setenv("ONE_ISCSI_LOCK_TIMEOUT", "1")
    holder = subprocess.Popen(["flock", str(lock_file), "sleep", "60"])
    try:
        wait_for(lambda: not lock_is_free(lock_file), what="lock taken")
        done = cp(random_image(tmp_path / "img.raw", 4096), 400, ds)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1
    assert error_block(done.stderr) == (
        f"connecting and taking the lock failed on localhost: lock {lock_file} on localhost is held "
        "by another one-iscsi for more than 1 s (LOCK_TIMEOUT)")
    assert tgtd.target_ids() == [] and not (tmp_path / "pool" / "vg-one" / "lv-one-400").exists()


CP_STEPS = [
    ("creating volume", "TRUNCATE", "-s"),
    ("creating target", "TGTADM", "--mode target --tid"),
    ("allowing initiators", "TGTADM", "--op bind"),
    ("adding LUN 1", "TGTADM", "--mode logicalunit"),
    ("writing the target's config file", "DD", "conv=fsync"),
    ("copying", "DD", "conv=notrunc,nocreat,fsync"),
]


def fail_when(tgtd, key, words):
    real = {"TRUNCATE": "truncate", "TGTADM": f"tgtadm -C {tgtd.control}", "DD": "dd", "MKFS": "mkfs"}[key]
    return {f"ONE_ISCSI_{key}": f"{DATA / 'fail-when'} '{words}' {real}"}


def assert_nothing_left(tgtd, tmp_path, image_id):
    assert tgtd.target_ids() == []
    assert not (tmp_path / "pool" / "vg-one" / f"lv-one-{image_id}").exists()
    conf_dir = tmp_path / "tgt-conf.d" / "one-iscsi"
    assert not conf_dir.exists() or [n for n in os.listdir(conf_dir) if not n.startswith(".")] == []
    assert lock_is_free(tmp_path / "one-iscsi.lock")


@pytest.mark.parametrize("step, key, words", CP_STEPS)
def test_cp_rolls_back_every_step(tgtd, ds, tmp_path, step, key, words):
    done = cp(random_image(tmp_path / "img.raw", MIB), 500, ds, **fail_when(tgtd, key, words))
    assert done.returncode == 1
    message = error_block(done.stderr)
    assert message.startswith(step) and " failed on localhost: " in message, message
    assert_nothing_left(tgtd, tmp_path, 500)


def test_cp_rolls_back_a_wrong_checksum(tgtd, ds, tmp_path):
    image = random_image(tmp_path / "img.raw", MIB)
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {"MD5": "0" * 32}, ds), "501")
    assert error_block(done.stderr).startswith("checking the image checksum failed on localhost: MD5 of")
    assert_nothing_left(tgtd, tmp_path, 501)


@pytest.mark.parametrize("step, key, words", [s for s in CP_STEPS if s[0] != "copying"] + [
    ("making the filesystem", "MKFS", "ext4")])
def test_mkfs_rolls_back_every_step(tgtd, ds, tmp_path, step, key, words):
    done = remote("datastore", "mkfs", action_xml({"SIZE": "8", "FSTYPE": "ext4"}, {}, ds), "502",
                  env=fail_when(tgtd, key, words))
    assert done.returncode == 1
    assert error_block(done.stderr).startswith(step)
    assert_nothing_left(tgtd, tmp_path, 502)


def test_tgtd_not_running(ds, tmp_path, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_TGTADM", "tgtadm -C 29999")
    monkeypatch.setenv("ONE_ISCSI_CONF_DIR", str(tmp_path / "conf"))
    monkeypatch.setenv("ONE_ISCSI_LOCK_FILE", str(tmp_path / "lock"))
    done = cp(random_image(tmp_path / "img.raw", 4096), 503, ds)
    assert done.returncode == 1
    assert error_block(done.stderr).startswith(
        "creating target failed on localhost: tgtd is not running on localhost: start it (systemctl start tgt), "
        "then `one-iscsi -H localhost target restore`: tgtadm failed on localhost (exit 107)")
    assert not (tmp_path / "pool" / "vg-one" / "lv-one-503").exists()


def test_backing_store_out_of_space(tgtd, ds, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    assert quiet(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)]).returncode == 0
    try:
        done = cp(random_image(tmp_path / "img.raw", 4 * MIB), 504, {**ds, "POOL_DIR": str(small)})
        assert done.returncode == 1
        message = error_block(done.stderr)
        assert message.startswith(f"copying {tmp_path}/img.raw to {small}/vg-one/lv-one-504 failed on localhost")
        assert "No space left on device" in message
        assert tgtd.target_ids() == [] and os.listdir(small / "vg-one") == []
    finally:
        quiet(["umount", str(small)])


class TestOverSsh:
    """Faults of the connection to the target server, through a real sshd."""

    @pytest.fixture
    def remote_ds(self, sshd, tgtd, ds, monkeypatch):
        monkeypatch.setenv("ONE_ISCSI_SSH", sshd.ssh)
        monkeypatch.setenv("ONE_ISCSI_TIMEOUT", "5")
        monkeypatch.setenv("ONE_ISCSI_LOCK_TIMEOUT", "2")
        return {**ds, "HOST": "tgtserver"}

    def test_cp_over_ssh_works(self, remote_ds, tgtd, tmp_path):
        image = random_image(tmp_path / "img.raw", MIB)
        done = cp(image, 600, remote_ds)
        assert (done.returncode, done.stdout) == (0, "iqn.2012-02.org.opennebula:tgtserver.vg-one.lv-one-600 1\n")
        data = read_lun(tgtd, "iqn.2012-02.org.opennebula:tgtserver.vg-one.lv-one-600", tmp_path / "back.raw")
        assert data == image.read_bytes()

    @pytest.mark.parametrize("ssh_options, detail", [
        (["-o", "Port=1"], "Connection refused"),
        (["-o", "User=no-such-user-here"], "Permission denied"),
    ])
    def test_unreachable_or_refused_host(self, remote_ds, tgtd, tmp_path, monkeypatch, sshd, ssh_options, detail):
        monkeypatch.setenv("ONE_ISCSI_SSH", " ".join([sshd.ssh, *ssh_options]))
        done = cp(random_image(tmp_path / "img.raw", 4096), 601, remote_ds)
        assert done.returncode == 1
        message = error_block(done.stderr)
        assert message.startswith("connecting and taking the lock failed on tgtserver: cannot reach host over ssh: "
                                  "ssh failed on tgtserver (exit 255): "), message
        assert detail in message
        assert tgtd.target_ids() == []

    def test_host_that_never_answers_times_out(self, remote_ds, tgtd, tmp_path, monkeypatch, sshd):
        import socket
        import time

        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("ONE_ISCSI_SSH", f"{sshd.ssh} -o Port={silent.getsockname()[1]}")
        monkeypatch.setenv("ONE_ISCSI_CONNECT_TIMEOUT", "1")
        started = time.monotonic()
        try:
            done = cp(random_image(tmp_path / "img.raw", 4096), 602, remote_ds)
        finally:
            silent.close()
        assert done.returncode == 1
        assert "Connection timed out during banner exchange" in error_block(done.stderr)  # CONNECT_TIMEOUT
        assert time.monotonic() - started < 30  # bounded, not hanging
        assert tgtd.target_ids() == []

    def test_ssh_dropped_during_the_copy(self, remote_ds, tgtd, tmp_path, monkeypatch, sshd):
        dropper = tmp_path / "dropping-ssh"
        dropper.write_text(
            "#!/bin/sh\n# passes 1 MiB of what a session sends (only a copy's is that long), then the connection drops\n"
            'case "$*" in *"LC_ALL=C sh"*) stdbuf -o0 head -c 1048576 | ' + sshd.ssh + ' "$@"; exit 255 ;; esac\n'
            f'exec {sshd.ssh} "$@"\n')
        dropper.chmod(0o755)
        monkeypatch.setenv("ONE_ISCSI_SSH", str(dropper))
        done = cp(random_image(tmp_path / "img.raw", 8 * MIB), 603, remote_ds)
        assert done.returncode == 1
        message = error_block(done.stderr)
        assert message.startswith(f"copying {tmp_path}/img.raw to {tmp_path}/pool/vg-one/lv-one-603 failed on "
                                  "tgtserver: cannot reach host over ssh: sh failed on tgtserver (exit 255)"), message
        assert_nothing_left(tgtd, tmp_path, 603)


def test_tgt_admin_brings_the_saved_targets_back_as_at_boot(own_tgtd, ds, tmp_path, monkeypatch):
    """tgt's own start-up (tgt-admin -e on targets.conf, which on Debian
    includes conf.d/*.conf) reads the files one-iscsi writes."""
    daemon = own_tgtd[0]
    for key, value in daemon.env.items():
        monkeypatch.setenv(key, value)
    conf_d = tmp_path / "tgt" / "conf.d"
    monkeypatch.setenv("ONE_ISCSI_CONF_DIR", str(conf_d / "one-iscsi"))
    monkeypatch.setenv("ONE_ISCSI_LOCK_FILE", str(tmp_path / "lock"))
    secured = {**ds, "INITIATORS": "127.0.0.1", "CHAP_USER": "oneadmin", "CHAP_PASSWORD": "s3cret-Pass.12"}
    for i in range(3):
        assert cp(random_image(tmp_path / f"img{i}.raw", 4096), 700 + i, secured).returncode == 0
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait()
    daemon = restart(daemon)
    own_tgtd.append(daemon)
    targets_conf = tmp_path / "tgt" / "targets.conf"
    targets_conf.write_text(f"default-driver iscsi\ninclude {conf_d}/*.conf\n")
    booted = quiet(["tgt-admin", "-C", str(daemon.control), "-e", "-c", str(targets_conf)])
    assert booted.returncode == 0, booted.stderr
    assert luns(daemon) == {IQN.format(700 + i): str(tmp_path / "pool" / "vg-one" / f"lv-one-{700 + i}")
                            for i in range(3)}
    shown = daemon.tgtadm("--op", "show", "--mode", "target").stdout
    assert shown.count("oneadmin") == 3 and shown.count("127.0.0.1\n") >= 3


def test_missing_volume_group_gets_a_hint(tgtd, tmp_path):
    """Real lvcreate (activation off: no device-mapper here) on a VG that does not exist."""
    vg = f"vg-absent-{os.getpid()}"
    done = cp(random_image(tmp_path / "img.raw", 4096), 800, {"BACKEND": "lvm", "VG_NAME": vg, "HOST": "localhost"},
              ONE_ISCSI_LVCREATE="lvcreate --config global/activation=0")
    assert done.returncode == 1
    assert error_block(done.stderr).startswith(
        f"creating volume failed on localhost: volume group {vg} does not exist on localhost: create it "
        f"(vgcreate {vg} DEVICE), or set VG_NAME: lvcreate failed on localhost (exit 5)")
    assert tgtd.target_ids() == []


def test_progress_on_a_terminal_only(tgtd, tmp_path):
    """image copy on a pseudo-terminal shows progress on stderr; through a pipe it does not."""
    import pty
    import sys

    image = random_image(tmp_path / "img.raw", 3 * MIB)
    device = tmp_path / "device"
    device.write_bytes(bytes(3 * MIB))
    one_iscsi = os.path.join(os.path.dirname(sys.executable), "one-iscsi")
    leader, follower = pty.openpty()
    process = subprocess.Popen([one_iscsi, "image", "copy", str(image), str(device)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        seen += data
    process.wait(timeout=60)
    os.close(leader)
    assert process.returncode == 0
    assert b"3.0 / 3.0 MiB" in seen and b"MiB/s" in seen
    piped = quiet([one_iscsi, "image", "copy", str(image), str(device)])
    assert piped.stderr == f"wrote 3.0 MiB ({3 * MIB} bytes) to {device}\n"
    silent = quiet([one_iscsi, "--quiet", "image", "copy", str(image), str(device)])
    assert (silent.returncode, silent.stderr) == (0, "")
