"""The target server reached as an ordinary user with sudo rights, as
OpenNebula's oneadmin reaches it: every privileged command goes through the
SUDO prefix, and the image writer through its sudo path (the volume is not
writable by that user). Real sshd, sudo, tgtd; data read back over iSCSI."""
import os
import pwd
import subprocess

import pytest

from support.commands import quiet
from support.driver import action_xml, error_block, random_image, read_lun, remote

USER = "one-iscsi-test"
SUDOERS = f"/etc/sudoers.d/{USER}"
IQN = "iqn.2012-02.org.opennebula:tgtserver.vg-one.lv-one-{}"


@pytest.fixture
def as_user(sshd, tgtd, monkeypatch, tmp_path):
    created = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        # "*": no password, but not a locked account, which sshd would refuse
        quiet(["useradd", "--no-create-home", "--shell", "/bin/sh", "--password", "*", USER]).check_returncode()
        created = True
    with open(SUDOERS, "w") as rule:
        rule.write(f"{USER} ALL=(root) NOPASSWD: ALL\n")
    os.chmod(SUDOERS, 0o440)
    monkeypatch.setenv("ONE_ISCSI_SSH", f"{sshd.ssh} -o User={USER}")
    monkeypatch.setenv("ONE_ISCSI_LOCK_FILE", f"/run/lock/one-iscsi-test-{os.getpid()}.lock")
    try:
        yield {"BACKEND": "file", "POOL_DIR": str(tmp_path / "pool"), "HOST": "tgtserver"}
    finally:
        os.unlink(SUDOERS)
        for left in ("", ".next-tid"):  # the lock, and where the last TID allocation left off
            if os.path.exists(f"/run/lock/one-iscsi-test-{os.getpid()}.lock{left}"):
                os.unlink(f"/run/lock/one-iscsi-test-{os.getpid()}.lock{left}")
        if created:
            quiet(["userdel", USER])


def test_cp_and_rm_as_an_ordinary_user_with_sudo(as_user, tgtd, tmp_path):
    image = random_image(tmp_path / "img.raw", 3 * 1024 * 1024 + 7)
    who = subprocess.run(["sh", "-c", f"{os.environ['ONE_ISCSI_SSH']} tgtserver id -un"],
                         capture_output=True, text=True, timeout=30)
    assert who.stdout.strip() == USER, who.stderr
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, as_user), "90")
    assert (done.returncode, done.stdout) == (0, f"{IQN.format(90)} 4\n"), done.stderr
    backing = tmp_path / "pool" / "vg-one" / "lv-one-90"
    assert backing.stat().st_uid == 0 and backing.stat().st_mode & 0o777 == 0o600
    assert read_lun(tgtd, IQN.format(90), tmp_path / "back.raw")[:image.stat().st_size] == image.read_bytes()
    assert remote("datastore", "rm", action_xml({"SOURCE": IQN.format(90)}, {}, as_user), "90").returncode == 0
    assert tgtd.target_ids() == [] and not backing.exists()


def test_without_sudo_rights_the_error_says_so(as_user, tgtd, tmp_path, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_SUDO", "sudo -n -u nobody")
    done = remote("datastore", "cp", action_xml({"PATH": str(random_image(tmp_path / "i", 4096))}, {}, as_user),
                  "91")
    assert done.returncode == 1
    assert "failed on tgtserver" in error_block(done.stderr)
    assert tgtd.target_ids() == []
