"""install.oned_conf: the oned.conf entries for each OpenNebula version."""
import pytest

from oneiscsi import install


@pytest.mark.parametrize("version, present, absent", [
    ((3, 4), ['arguments = "-t 15 -d dummy,lvm,shared,qcow2,ssh,vmware,iscsi"', '-d fs,vmware,iscsi'],
     ["TM_MAD_CONF", "DS_MAD_CONF"]),
    ((4, 12), ['TM_MAD_CONF = [ name = "iscsi"', 'clone_target = "SELF"'], ["DS_MAD_CONF"]),
    ((6, 10), ['TM_MAD_CONF = [ NAME = "iscsi", LN_TARGET = "NONE", CLONE_TARGET = "SELF", SHARED = "YES"',
               'DISK_TYPE = "BLOCK"', 'DS_MAD_CONF = [ NAME = "iscsi", REQUIRED_ATTRS = "", PERSISTENT_ONLY = "NO" ]'],
     ["one_tm"]),
])
def test_oned_conf_entries_follow_the_version(version, present, absent):
    text = install.oned_conf(version)
    assert all(entry in text for entry in present), text
    assert not any(entry in text for entry in absent), text


def test_install_prints_the_entries_of_the_version_it_is_told(cli, tmp_path):
    (tmp_path / "remotes").mkdir()
    done = cli("--dry-run", "install", "--prefix", str(tmp_path / "remotes"), "--share", str(tmp_path / "share"),
               "--opennebula-version", "7.0")
    assert done.rc == 0, done.err
    assert "oned.conf of OpenNebula 7.0" in done.out and 'DS_MAD_CONF = [ NAME = "iscsi"' in done.out
    assert list((tmp_path / "remotes").iterdir()) == []  # a dry run


def test_install_without_a_version_says_how_to_get_the_entries(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_OPENNEBULA_VERSION", "")
    monkeypatch.setenv("ONE_ISCSI_ONE_LOCATION", str(tmp_path / "no-opennebula"))
    (tmp_path / "remotes").mkdir()
    done = cli("--dry-run", "install", "--prefix", str(tmp_path / "remotes"), "--share", str(tmp_path / "share"))
    assert done.rc == 0, done.err
    assert "no OpenNebula version found here; see them with --opennebula-version VERSION" in done.out
