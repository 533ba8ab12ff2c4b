import pytest

from oneiscsi import config, lvm, storage
from oneiscsi.errors import InvalidInput


def cfg(**values):
    return config.load(env={f"ONE_ISCSI_{k}": v for k, v in values.items()})


def argvs(commands):
    return [list(cmd.argv) for cmd in commands]


def test_lvm_volume():
    volume = storage.volume(7, cfg())
    assert volume.device == "/dev/vg-one/lv-one-7"
    [(create, undo)] = volume.create(12)
    assert argvs(create) == [["lvcreate", "--yes", "-W", "y", "-L", "12M", "-n", "lv-one-7", "vg-one"]]
    assert argvs(undo) == argvs(volume.remove()) == [["lvremove", "-f", "vg-one/lv-one-7"]]
    assert all(cmd.privileged for cmd in create + undo)


def test_file_volume_never_takes_over_an_existing_file():
    volume = storage.volume(7, cfg(BACKEND="file", POOL_DIR="/srv/pool"))
    assert volume.device == "/srv/pool/vg-one/lv-one-7"
    ([mkdir, create], undo), ([chmod, truncate], no_undo) = volume.create(12)
    assert chmod.argv == ("chmod", "0600", "/srv/pool/vg-one/lv-one-7") and chmod.privileged
    assert undo == volume.remove() and no_undo == []
    assert mkdir.argv == ("mkdir", "-p", "/srv/pool/vg-one") and mkdir.privileged
    assert create.argv == ("dd", "of=/srv/pool/vg-one/lv-one-7", "conv=excl", "count=0", "status=none")
    assert truncate.argv == ("truncate", "-s", "12M", "/srv/pool/vg-one/lv-one-7")
    assert argvs(volume.remove()) == [["rm", "-f", "/srv/pool/vg-one/lv-one-7"]]


def test_file_mode_follows_umask():
    volume = storage.volume(7, cfg(BACKEND="file", UMASK="027"))
    assert volume.create(1)[1][0][0].argv == ("chmod", "0640", "/srv/one-iscsi/vg-one/lv-one-7")
    with pytest.raises(config.ConfigError, match="UMASK must be an octal number"):
        cfg(UMASK="999")


def test_usage_commands_and_parsers():
    assert storage.usage(cfg()) == [lvm.vg_usage("vg-one")]
    assert lvm.vg_usage("vg-one").argv == ("vgs", "--noheadings", "--units", "b", "--nosuffix", "--separator",
                                           ":", "-o", "vg_size,vg_free", "vg-one")
    assert lvm.vg_usage("vg-one").query
    assert storage.parse_usage("lvm", "  268435456:134217728\n") == (256, 128)
    assert storage.parse_usage("file", "      1B-blocks        Avail\n 10737418240 5368709120\n") == (10240, 5120)


def test_names_are_checked():
    with pytest.raises(InvalidInput):
        storage.volume(1, cfg(VG_NAME="vg_one"))
    with pytest.raises(InvalidInput):
        storage.volume_named("vg-one", "../../etc", cfg())


def test_backend_must_be_known():
    with pytest.raises(config.ConfigError, match="BACKEND must be one of lvm, file"):
        cfg(BACKEND="zfs")


def test_size_and_grow_of_each_backend():
    lv = storage.volume(7, cfg())
    assert lv.size().argv == ("lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size", "vg-one/lv-one-7")
    assert lv.size().query
    assert lv.grow(16).argv == ("lvextend", "-L", "16M", "vg-one/lv-one-7") and lv.grow(16).privileged
    file = storage.volume(7, cfg(BACKEND="file", POOL_DIR="/srv/pool"))
    assert file.size().argv == ("stat", "-c", "%s", "/srv/pool/vg-one/lv-one-7") and file.size().query
    assert file.grow(16).argv == ("truncate", "-s", "16M", "/srv/pool/vg-one/lv-one-7") and file.grow(16).privileged
    assert storage.parse_size("  8388608\n") == 8388608


@pytest.mark.parametrize("backend, stderr", [
    ("lvm", '  Failed to find logical volume "vg-one/lv-one-7"'),
    ("file", "stat: cannot statx '/srv/one-iscsi/vg-one/lv-one-7': No such file or directory")])
def test_size_of_a_missing_volume_is_not_found(backend, stderr):
    from oneiscsi.errors import CommandError, NotFound

    size = storage.volume(7, cfg(BACKEND=backend)).size()
    assert isinstance(size.explain(CommandError(size.argv[0], "tgt1", 5, stderr)), NotFound)
    assert size.explain(CommandError(size.argv[0], "tgt1", 5, "Permission denied")) is None


def test_private_copies_have_volumes_of_their_own():
    assert storage.private_lv_name(9, 0) == "lv-one-9-0"
    assert storage.private_lv_name(9, 0) != storage.lv_name(90)
