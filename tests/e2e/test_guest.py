"""Transfer actions against a real Linux hypervisor host (the qemu guest of
conftest.py), through the remotes as OpenNebula calls them.

Real end to end: the image is registered on the session's tgtd (file backend)
with `datastore cp` over ssh; `tm` actions log the guest's kernel initiator in
and out over ssh as oneadmin with sudo; the tests check, as root in the guest,
iscsiadm's sessions and node records, udev's by-path links and the data read
through the disk link. Nothing is mocked; the one test-bed artefact is the
relay on the guest's loopback that stands for the target server's address
(see conftest.py)."""
import hashlib
import os
import time

from support.driver import action_xml, error_block, remote

from .guest_image import INITIATOR

VM = "/var/lib/one/datastores/0/7"
DISK = f"{VM}/disk.0"
SIZE = 4 * 1024 * 1024
CHAP_PASSWORD = "e2e-Secret-4711"


def register(tmp_path, image_id, datastore=None):
    """`datastore cp` of a random image; returns its IQN and sha256."""
    image = tmp_path / f"image-{image_id}.raw"
    image.write_bytes(os.urandom(SIZE))
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, datastore or {}), str(image_id))
    assert done.returncode == 0, done.stderr
    iqn, size_mb = done.stdout.split()
    assert (iqn, size_mb) == (f"iqn.2012-02.org.opennebula:tgtserver.vg-one.lv-one-{image_id}", "4")
    return iqn, hashlib.sha256(image.read_bytes()).hexdigest()


def by_path(tgtd, iqn):
    return f"/dev/disk/by-path/ip-tgtserver:{tgtd.port}-iscsi-{iqn}-lun-1"  # the portal as given to iscsiadm


def read_back(guest, path):
    """sha256 of the image's bytes as the guest reads them through path."""
    done = guest.root(f"head -c {SIZE} {path} | sha256sum")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


def assert_linked(guest, tgtd, iqn, digest):
    assert guest.sessions() == [iqn]
    device = by_path(tgtd, iqn)
    assert guest.root(f"readlink {DISK}").stdout == f"{device}\n"
    assert guest.root(f"test -b {device}").returncode == 0
    assert read_back(guest, DISK) == digest


def assert_nothing_left(guest, iqn):
    assert guest.sessions() == []
    assert iqn not in guest.nodes()
    assert not guest.exists(DISK)


def test_ln_again_mv_mvds_delete(frontend, tgtd, tmp_path):
    guest = frontend
    iqn, digest = register(tmp_path, 7)
    done = remote("tm", "ln", iqn, f"guest:{DISK}", "4", "7", "0")
    assert (done.returncode, done.stderr) == (0, f"INFO: ln: logged in to {iqn} on guest, linked {DISK}\n")
    assert_linked(guest, tgtd, iqn, digest)

    again = remote("tm", "ln", iqn, f"guest:{DISK}", "4", "7", "0")
    assert (again.returncode, again.stderr) == (
        0, f"INFO: ln: already logged in to {iqn} on guest, linked {DISK}\n")
    assert_linked(guest, tgtd, iqn, digest)

    same = remote("tm", "mv", f"guest:{VM}", f"guest:{VM}", "7", "0")
    assert (same.returncode, same.stderr) == (0, f"INFO: mv: guest:{VM} is already in place: nothing to move\n")
    assert_linked(guest, tgtd, iqn, digest)

    out = remote("tm", "mvds", f"guest:{DISK}", iqn, "7", "0")
    assert (out.returncode, out.stderr) == (0, f"INFO: mvds: logged out of {iqn} on guest\n")
    assert guest.sessions() == [] and iqn not in guest.nodes()
    assert guest.root(f"udevadm settle --timeout=30 && test ! -e {by_path(tgtd, iqn)}").returncode == 0

    gone = remote("tm", "delete", f"guest:{VM}", "7", "0")
    assert (gone.returncode, gone.stderr) == (0, f"INFO: delete: removed guest:{VM}\n")
    assert not guest.exists(VM)


def test_delete_of_a_linked_disk_logs_out(frontend, tgtd, tmp_path):
    guest = frontend
    iqn, digest = register(tmp_path, 8)
    assert remote("tm", "ln", iqn, f"guest:{DISK}").returncode == 0
    assert_linked(guest, tgtd, iqn, digest)
    done = remote("tm", "delete", f"guest:{DISK}")
    assert (done.returncode, done.stderr) == (
        0, f"INFO: delete: logged out of {iqn} on guest, removed {DISK}\n")
    assert_nothing_left(guest, iqn)


def test_ln_to_a_missing_target_fails_cleanly(frontend, tmp_path, monkeypatch):
    guest = frontend
    monkeypatch.setenv("ONE_ISCSI_DEVICE_TIMEOUT", "20")
    present, _ = register(tmp_path, 9)  # the server has a target: the login is what fails
    missing = present.replace("lv-one-9", "lv-one-99")
    started = time.monotonic()
    done = remote("tm", "ln", missing, f"guest:{DISK}")
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert error_block(done.stderr).startswith("iscsiadm failed on guest (exit 19)"), done.stderr
    assert elapsed < 20
    assert_nothing_left(guest, missing)
    assert guest.nodes() == []  # no record of the server's other targets either


def test_acl_for_another_initiator_refuses_ln(frontend, tmp_path):
    guest = frontend
    iqn, _ = register(tmp_path, 10, {"INITIATORS": "iqn.1993-08.org.debian:01:someone-else"})
    done = remote("tm", "ln", iqn, f"guest:{DISK}")
    assert done.returncode == 1  # tgtd refuses the guest's login
    assert error_block(done.stderr).startswith("iscsiadm failed on guest (exit 19)"), done.stderr
    assert_nothing_left(guest, iqn)


def test_acl_for_the_guest_admits_it(frontend, tgtd, tmp_path):
    iqn, digest = register(tmp_path, 11, {"INITIATORS": INITIATOR})
    done = remote("tm", "ln", iqn, f"guest:{DISK}")
    assert done.returncode == 0, done.stderr
    assert_linked(frontend, tgtd, iqn, digest)


def test_chap_wrong_password_fails_right_one_logs_in(frontend, tgtd, tmp_path, monkeypatch):
    guest = frontend
    iqn, digest = register(tmp_path, 12, {"CHAP_USER": "oneadmin", "CHAP_PASSWORD": CHAP_PASSWORD})
    monkeypatch.setenv("ONE_ISCSI_CHAP_USER", "oneadmin")
    monkeypatch.setenv("ONE_ISCSI_CHAP_PASSWORD", "not-the-Secret-1")
    refused = remote("tm", "ln", iqn, f"guest:{DISK}")
    assert refused.returncode == 1
    assert error_block(refused.stderr).startswith("iscsiadm failed on guest (exit 24)")
    assert "Secret" not in refused.stderr
    assert_nothing_left(guest, iqn)

    monkeypatch.setenv("ONE_ISCSI_CHAP_PASSWORD", CHAP_PASSWORD)
    done = remote("tm", "ln", iqn, f"guest:{DISK}")
    assert done.returncode == 0, done.stderr
    assert CHAP_PASSWORD not in done.stdout + done.stderr
    assert_linked(guest, tgtd, iqn, digest)
