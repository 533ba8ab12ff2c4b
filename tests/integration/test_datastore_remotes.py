"""Datastore actions through the remote stubs, as OpenNebula calls them, against
a real tgtd with the file backend; data checked end to end over iSCSI."""
import hashlib
import os
import subprocess

import pytest

from support.commands import quiet
from support.driver import action_xml, encode, error_block, random_image, read_lun, remote
from support.paths import DATA

MIB = 1024 * 1024
IQN = "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-{}"


@pytest.fixture
def pool(tmp_path):
    return tmp_path / "pool"


@pytest.fixture
def ds(pool):
    """Datastore template attributes of a file-backed iSCSI datastore."""
    return {"BACKEND": "file", "POOL_DIR": str(pool), "HOST": "localhost", "VG_NAME": "vg-one"}


def test_cp_copies_the_image_and_prints_iqn_and_size(tgtd, ds, pool, tmp_path):
    image = random_image(tmp_path / "img.raw", 5 * MIB + 123)
    data = image.read_bytes()
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {"MD5": hashlib.md5(data).hexdigest()},
                                                 ds), "7")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{IQN.format(7)} 6\n"
    lun = read_lun(tgtd, IQN.format(7), tmp_path / "back.raw")
    assert len(lun) == 6 * MIB
    assert lun[:len(data)] == data and lun[len(data):] == bytes(len(lun) - len(data))
    backing = pool / "vg-one" / "lv-one-7"
    assert backing.stat().st_size == 6 * MIB
    assert backing.stat().st_mode & 0o777 == 0o600  # UMASK 077: image data is not world-readable
    shown = quiet(["tgtadm", "-C", str(tgtd.control), "--op", "show", "--mode", "target"]).stdout
    assert f"Backing store path: {backing}" in shown and "ALL" in shown


def test_cp_of_qcow2_converts_while_copying(tgtd, ds, tmp_path):
    raw = random_image(tmp_path / "src.raw", 3 * MIB)
    qcow2 = tmp_path / "src.qcow2"
    assert quiet(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)]).returncode == 0
    assert quiet(["qemu-img", "resize", "-f", "qcow2", str(qcow2), "4M"]).returncode == 0
    done = remote("datastore", "cp", action_xml({"PATH": str(qcow2)}, {}, ds), "8")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{IQN.format(8)} 4\n"
    lun = read_lun(tgtd, IQN.format(8), tmp_path / "back.raw")
    assert lun == raw.read_bytes() + bytes(MIB)


def test_cp_of_qcow2_for_a_vm_reading_qcow2_keeps_its_bytes(tgtd, ds, tmp_path, monkeypatch):
    """DRIVER=qcow2: the VM reads qcow2 from the device, so the file is copied
    as it is, onto a volume with room for every cluster; 7.x is told qcow2."""
    monkeypatch.setenv("ONE_ISCSI_OPENNEBULA_VERSION", "7.0")
    raw = random_image(tmp_path / "src.raw", 3 * MIB)
    qcow2 = tmp_path / "src.qcow2"
    assert quiet(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)]).returncode == 0
    assert quiet(["qemu-img", "resize", "-f", "qcow2", str(qcow2), "8M"]).returncode == 0
    done = remote("datastore", "cp", "8", stdin=action_xml({"PATH": str(qcow2)}, {"DRIVER": "qcow2"}, ds))
    assert (done.returncode, done.stdout) == (0, f"{IQN.format(8)} qcow2\n"), done.stderr
    lun = read_lun(tgtd, IQN.format(8), tmp_path / "back.qcow2")
    assert lun[:qcow2.stat().st_size] == qcow2.read_bytes() and not any(lun[qcow2.stat().st_size:])
    assert len(lun) >= 8 * MIB  # the guest's writes fit: qcow2 on a device cannot grow
    read = quiet(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(tmp_path / "back.qcow2"),
                  str(tmp_path / "guest.raw")])
    assert read.returncode == 0, read.stderr
    assert (tmp_path / "guest.raw").read_bytes() == raw.read_bytes() + bytes(5 * MIB)


def test_cp_from_url_streams(tgtd, ds, tmp_path, http_server):
    image = random_image(http_server.root / "img.raw", 2 * MIB + 5)
    done = remote("datastore", "cp", action_xml({"PATH": http_server.url("img.raw")}, {}, ds), "9")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{IQN.format(9)} 3\n"
    assert read_lun(tgtd, IQN.format(9), tmp_path / "back.raw")[:2 * MIB + 5] == image.read_bytes()


def test_checksum_mismatch_rolls_back(tgtd, ds, pool, tmp_path):
    image = random_image(tmp_path / "img.raw", MIB)
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {"SHA1": "0" * 40}, ds), "10")
    assert done.returncode != 0
    assert done.stdout == ""
    message = error_block(done.stderr)
    assert message.startswith("checking the image checksum failed on localhost: SHA1 of")
    assert done.stderr.startswith(f"ERROR: cp: {message}\n")
    assert tgtd.target_ids() == []
    assert list((pool / "vg-one").iterdir()) == []


def test_cp_with_both_checksums_right(tgtd, ds, tmp_path):
    image = random_image(tmp_path / "img.raw", MIB)
    data = image.read_bytes()
    sums = {"MD5": hashlib.md5(data).hexdigest(), "SHA1": hashlib.sha1(data).hexdigest().upper()}
    assert remote("datastore", "cp", action_xml({"PATH": str(image)}, sums, ds), "11").returncode == 0


@pytest.mark.parametrize("step, wrapper_key, words", [
    ("creating volume", "TRUNCATE", "-s"),
    ("creating target", "TGTADM", "--mode target --tid"),
    ("allowing initiators", "TGTADM", "--op bind"),
    ("adding LUN 1", "TGTADM", "--mode logicalunit"),
    ("copying", "DD", "conv=notrunc,nocreat,fsync"),
])
def test_each_failing_step_of_cp_leaves_nothing(tgtd, ds, pool, tmp_path, monkeypatch, step, wrapper_key, words):
    """A failing command is configured through ONE_ISCSI_<KEY>."""
    real = {"TRUNCATE": "truncate", "TGTADM": f"tgtadm -C {tgtd.control}", "DD": "dd"}[wrapper_key]
    monkeypatch.setenv(f"ONE_ISCSI_{wrapper_key}", f"{DATA / 'fail-when'} '{words}' {real}")
    image = random_image(tmp_path / "img.raw", MIB)
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, ds), "12")
    assert done.returncode == 1
    message = error_block(done.stderr)
    assert message.startswith(f"{step}") and "failed on localhost" in message
    assert "injected failure" in message
    assert tgtd.target_ids() == []
    assert not (pool / "vg-one" / "lv-one-12").exists()


def test_existing_volume_file_is_never_taken_over(tgtd, ds, pool, tmp_path):
    (pool / "vg-one").mkdir(parents=True)
    precious = pool / "vg-one" / "lv-one-13"
    precious.write_bytes(b"keep me")
    image = random_image(tmp_path / "img.raw", MIB)
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, ds), "13")
    assert done.returncode == 1
    assert "File exists" in error_block(done.stderr)
    assert precious.read_bytes() == b"keep me"
    assert tgtd.target_ids() == []


@pytest.mark.parametrize("fstype, expected", [("ext4", "ext4"), ("ext2", "ext2"), ("swap", "swap"),
                                              ("", "ext3")])
def test_mkfs_makes_the_filesystem(tgtd, ds, pool, fstype, expected):
    done = remote("datastore", "mkfs", action_xml({"SIZE": "16", "FSTYPE": fstype}, {}, ds), "20")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{IQN.format(20)} 16\n"
    backing = pool / "vg-one" / "lv-one-20"
    assert quiet(["blkid", "-o", "value", "-s", "TYPE", str(backing)]).stdout.strip() == expected
    assert len(tgtd.target_ids()) == 1


def test_mkfs_raw_and_save_as(tgtd, ds, pool):
    raw = remote("datastore", "mkfs", action_xml({"SIZE": "4", "FSTYPE": "raw"}, {}, ds), "21")
    assert raw.returncode == 0 and (pool / "vg-one" / "lv-one-21").stat().st_size == 4 * MIB
    save_as = remote("datastore", "mkfs", action_xml({"SIZE": "4", "FSTYPE": "save_as"}, {}, ds), "22")
    assert (save_as.returncode, save_as.stdout) == (0, f"{IQN.format(22)} 4\n")
    # the image a VM's disk is saved into: its volume and target, no filesystem
    assert (pool / "vg-one" / "lv-one-22").stat().st_size == 4 * MIB
    assert tgtd.tgtadm("--op", "show", "--mode", "target").stdout.count(IQN.format(22)) == 1
    assert len(tgtd.target_ids()) == 2


def test_mkfs_refuses_unknown_filesystem_before_creating(tgtd, ds, pool):
    done = remote("datastore", "mkfs", action_xml({"SIZE": "4", "FSTYPE": "xfs;reboot"}, {}, ds), "23")
    assert done.returncode == 2
    assert error_block(done.stderr).startswith("unsupported filesystem 'xfs;reboot'")
    assert tgtd.target_ids() == [] and not pool.exists()


def test_rm_twice(tgtd, ds, pool):
    assert remote("datastore", "mkfs", action_xml({"SIZE": "4", "FSTYPE": "raw"}, {}, ds), "30").returncode == 0
    rm = action_xml({"SOURCE": IQN.format(30)}, {}, ds)
    first = remote("datastore", "rm", rm, "30")
    assert (first.returncode, first.stdout, first.stderr) == (0, "", "")
    assert tgtd.target_ids() == [] and not (pool / "vg-one" / "lv-one-30").exists()
    second = remote("datastore", "rm", rm, "30")
    assert (second.returncode, second.stdout) == (0, "")
    assert second.stderr == f"INFO: rm: no target {IQN.format(30)} on localhost: already deleted\n"


def test_rm_refuses_a_target_in_use(tgtd, ds, pool, tmp_path):
    """qemu-nbd holds a real iSCSI session to the LUN."""
    from support.ports import free_port
    from support.wait import wait_for

    assert remote("datastore", "mkfs", action_xml({"SIZE": "4", "FSTYPE": "raw"}, {}, ds), "31").returncode == 0
    nbd = subprocess.Popen(["qemu-nbd", "-r", "-f", "raw", "-b", "127.0.0.1", "-p", str(free_port()),
                            tgtd.url(IQN.format(31))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: "I_T nexus: " in tgtd.tgtadm("--op", "show", "--mode", "target").stdout,
                 what="session")
        done = remote("datastore", "rm", action_xml({"SOURCE": IQN.format(31)}, {}, ds), "31")
        assert done.returncode == 1
        assert error_block(done.stderr).startswith(f"target {IQN.format(31)} on localhost is in use by ")
        assert len(tgtd.target_ids()) == 1 and (pool / "vg-one" / "lv-one-31").exists()
    finally:
        nbd.kill()
        nbd.wait()


def test_stat_local_qcow2_and_url(tmp_path, ds, http_server):
    image = random_image(tmp_path / "img.raw", 3 * MIB + 1)
    done = remote("datastore", "stat", action_xml({"PATH": str(image)}, {}, ds), "40")
    assert (done.returncode, done.stdout) == (0, "4\n")
    qcow2 = tmp_path / "img.qcow2"
    quiet(["qemu-img", "create", "-f", "qcow2", str(qcow2), "100M"]).check_returncode()
    assert remote("datastore", "stat", action_xml({"PATH": str(qcow2)}, {}, ds), "40").stdout == "100\n"
    random_image(http_server.root / "u.raw", MIB)
    assert remote("datastore", "stat", action_xml({"PATH": http_server.url("u.raw")}, {}, ds), "40").stdout == "1\n"
    missing = remote("datastore", "stat", action_xml({"PATH": http_server.url("nope")}, {}, ds), "40")
    assert missing.returncode == 1 and "cannot download" in error_block(missing.stderr)


def test_monitor_file_backend(ds):
    done = remote("datastore", "monitor", action_xml({}, {}, ds), "100")
    assert done.returncode == 0, done.stderr
    values = dict(line.split("=") for line in done.stdout.splitlines())
    assert list(values) == ["USED_MB", "TOTAL_MB", "FREE_MB"]
    used, total, free = (int(values[key]) for key in values)
    assert total > 0 and used + free == total


@pytest.mark.parametrize("data, message", [
    ("not base64!", "malformed base64 in DS_DRIVER_ACTION_DATA"),
    (encode("<DS_DRIVER_ACTION_DATA><IMAGE>"), "malformed XML in DS_DRIVER_ACTION_DATA"),
    (encode("<OTHER/>"), "expected <DS_DRIVER_ACTION_DATA>, got <OTHER>"),
    (encode("<DS_DRIVER_ACTION_DATA><IMAGE></IMAGE></DS_DRIVER_ACTION_DATA>"),
     "missing IMAGE/PATH in DS_DRIVER_ACTION_DATA"),
    (encode('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><DS_DRIVER_ACTION_DATA>'
            "<IMAGE><PATH>&e;</PATH></IMAGE></DS_DRIVER_ACTION_DATA>"), "refused XML"),
    (encode('<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            "<DS_DRIVER_ACTION_DATA><IMAGE><PATH>&b;</PATH></IMAGE></DS_DRIVER_ACTION_DATA>"), "refused XML"),
])
def test_bad_action_data_is_refused(tgtd, data, message):
    done = remote("datastore", "cp", data, "50")
    assert done.returncode == 2
    assert error_block(done.stderr).startswith(message)
    assert tgtd.target_ids() == []


class TestRestrictedDirectories:
    def cp(self, path, ds, **extra):
        return remote("datastore", "cp", action_xml({"PATH": str(path)}, {}, {**ds, **extra}), "60")

    def test_symlink_into_etc_one_is_refused(self, tgtd, ds, tmp_path):
        link = tmp_path / "innocent.img"
        link.symlink_to("/etc/one/oned.conf")
        done = self.cp(link, ds)
        assert done.returncode == 2
        assert error_block(done.stderr) == f"Not allowed to copy image file {link}"
        assert tgtd.target_ids() == []

    def test_sibling_with_common_prefix_is_allowed(self, tgtd, ds, tmp_path):
        (tmp_path / "one").mkdir()
        sibling = tmp_path / "one-images"
        sibling.mkdir()
        image = random_image(sibling / "img.raw", MIB)
        assert self.cp(image, ds, RESTRICTED_DIRS=str(tmp_path / "one")).returncode == 0

    def test_dot_dot_escape_is_refused(self, tgtd, ds, tmp_path):
        restricted = tmp_path / "one"
        restricted.mkdir()
        random_image(restricted / "secret.img", MIB)
        (tmp_path / "public").mkdir()
        sneaky = f"{tmp_path}/public/../one//secret.img"
        done = self.cp(sneaky, ds, RESTRICTED_DIRS=f"{restricted}/")
        assert error_block(done.stderr) == f"Not allowed to copy image file {sneaky}"

    def test_safe_dirs_allow_again(self, tgtd, ds, tmp_path):
        restricted = tmp_path / "one"
        (restricted / "images").mkdir(parents=True)
        image = random_image(restricted / "images" / "ok.img", MIB)
        refused = self.cp(image, ds, RESTRICTED_DIRS=str(restricted))
        assert refused.returncode == 2
        allowed = self.cp(image, ds, RESTRICTED_DIRS=str(restricted), SAFE_DIRS=str(restricted / "images"))
        assert allowed.returncode == 0, allowed.stderr


def test_qcow2_with_a_backing_file_is_refused(tgtd, ds, tmp_path):
    """qemu would read the backing file too, whatever directory it is in."""
    secret = random_image(tmp_path / "secret.raw", MIB)
    overlay = tmp_path / "overlay.qcow2"
    quiet(["qemu-img", "create", "-f", "qcow2", "-b", str(secret), "-F", "raw", str(overlay)]).check_returncode()
    done = remote("datastore", "cp", action_xml({"PATH": str(overlay)}, {}, ds), "70")
    assert done.returncode == 2
    assert error_block(done.stderr) == (
        f"qcow2 image {overlay} uses another file ({secret}): not supported")
    assert tgtd.target_ids() == []


def test_rm_removes_only_the_image_it_is_called_for(tgtd, ds, pool):
    assert remote("datastore", "mkfs", action_xml({"SIZE": "4", "FSTYPE": "raw"}, {}, ds), "71").returncode == 0
    for source in (IQN.format(71), "iqn.2012-02.org.opennebula:localhost.other-vg.lv-one-72",
                   "iqn.2012-02.org.opennebula:tgt2.vg-one.lv-one-72", "iqn.2020-01.org.other:localhost.vg-one.lv-one-72"):
        done = remote("datastore", "rm", action_xml({"SOURCE": source}, {}, ds), "72")
        assert done.returncode == 2
        assert error_block(done.stderr) == f"SOURCE {source} is not image 72 of this datastore (that is {IQN.format(72)})"
    assert len(tgtd.target_ids()) == 1 and (pool / "vg-one" / "lv-one-71").exists()


def test_a_download_cut_short_is_an_error(tgtd, ds, pool):
    """The server announces 8 MiB and closes after 1 MiB."""
    import http.server
    import threading

    class Short(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(8 * MIB))
            self.end_headers()
            self.wfile.write(bytes(MIB))

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Short)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/image"
        done = remote("datastore", "cp", action_xml({"PATH": url}, {}, ds), "73")
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 1
    assert error_block(done.stderr).startswith(f"copying {url} to {pool}/vg-one/lv-one-73 failed on localhost:")
    assert tgtd.target_ids() == [] and not (pool / "vg-one" / "lv-one-73").exists()


@pytest.mark.parametrize("where", ["localhost", "tgtserver"])
def test_image_copy_leaves_no_stale_data(tgtd, cli, tmp_path, monkeypatch, sshd, where):
    """An existing device full of a pattern: after the copy it is the image,
    zeros included, though zero blocks never crossed the connection."""
    monkeypatch.setenv("ONE_ISCSI_SSH", sshd.ssh)
    blocks = [os.urandom(MIB) if i % 3 == 0 else bytes(MIB) for i in range(8)] + [b"end"]
    image = tmp_path / "sparse.raw"
    image.write_bytes(b"".join(blocks))
    device = tmp_path / "device"
    device.write_bytes(b"\xa5" * (9 * MIB))
    done = cli("image", "copy", str(image), str(device), "--host", where)
    assert (done.rc, done.err) == (0, f"wrote 8.0 MiB ({8 * MIB + 3} bytes) to {device}\n")
    assert device.read_bytes()[:8 * MIB + 3] == image.read_bytes()


@pytest.mark.parametrize("where", ["localhost", "tgtserver"])
def test_image_copy_refuses_an_image_larger_than_the_device(tgtd, cli, tmp_path, monkeypatch, sshd, where):
    monkeypatch.setenv("ONE_ISCSI_SSH", sshd.ssh)
    image = tmp_path / "big.raw"
    image.write_bytes(os.urandom(MIB))
    os.truncate(image, 2048 * MIB)
    device = tmp_path / "device"
    device.write_bytes(b"\xa5" * (100 * MIB))
    done = cli("image", "copy", str(image), str(device), "-H", where)
    assert done.rc == 2
    assert done.err == (f"one-iscsi: error: {image} ({2048 * MIB} bytes) does not fit on {device} "
                        f"({100 * MIB} bytes) on {where}: nothing written\n")
    assert device.read_bytes() == b"\xa5" * (100 * MIB)
    missing = cli("image", "copy", str(image), str(tmp_path / "nothing"), "-H", where)
    assert (missing.rc, missing.err) == (1, f"one-iscsi: error: no device or file {tmp_path / 'nothing'} on {where}\n")


def test_image_copy_of_qcow2(tgtd, cli, tmp_path):
    raw = tmp_path / "src.raw"
    raw.write_bytes(bytes(MIB) + os.urandom(MIB) + bytes(2 * MIB))
    qcow2 = tmp_path / "src.qcow2"
    quiet(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)]).check_returncode()
    device = tmp_path / "device"
    device.write_bytes(b"\x5a" * (4 * MIB))
    assert cli("image", "copy", str(qcow2), str(device)).rc == 0
    assert device.read_bytes() == raw.read_bytes()
