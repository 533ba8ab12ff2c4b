"""The datastore actions, run against a recording Runner (no process is
started): the exact commands on the target server, the image data fed to it,
what a failing step takes back, notes, errors and exit statuses."""
import ast
import hashlib
import io
import json
import os
from contextlib import contextmanager

import pytest
from support.expected import (ALLOWED, BASE, CHAP, CONF_DIR, INCLUDE, IQN, READ_HINT, SHOW, allowed, bind, cat, conf,
                          delete_target, exported, forget, found, listing, make_target, new_lun, no_file, readd_lun,
                          lio_probe, saved)

from oneiscsi import config, datastore, imagewriter, names, source, tgt, tgtconf
from oneiscsi.datastore import Registered, Usage
from oneiscsi.config import ConfigError
from oneiscsi.errors import InvalidInput, NotFound, OneIscsiError, StepFailed
from oneiscsi.run import failure
from oneiscsi.units import MIB
from support.recording import Recorder, make_config

FILE = "/srv/pool/vg-one/lv-one-7"
LV = "/dev/vg-one/lv-one-7"
RM_FILE = ["rm", "-f", FILE]
LVREMOVE = ["lvremove", "-f", "vg-one/lv-one-7"]
DELETE = delete_target(1, "--force")  # the undo of a new target
IMAGE_SIZE = 1000 + MIB + 10


def file_volume(size: str = "2M") -> list[list[str]]:
    return [["mkdir", "-p", "/srv/pool/vg-one"], ["dd", f"of={FILE}", "conv=excl", "count=0", "status=none"],
            ["chmod", "0600", FILE], ["truncate", "-s", size, FILE]]


def lv_volume(size: str = "2M") -> list[list[str]]:
    return [["lvcreate", "--yes", "-W", "y", "-L", size, "-n", "lv-one-7", "vg-one"]]


# backend -> (device, commands making the volume of a size, its removal)
BACKENDS = {"file": (FILE, file_volume, RM_FILE), "lvm": (LV, lv_volume, LVREMOVE)}


def target(device: str, iqn: str = IQN) -> list[list[str]]:
    """A new target of TID 1 (the hint's), no listing: open to all, device as LUN 1."""
    return [READ_HINT, make_target(1, iqn), bind(1, "address", "ALL"), new_lun(1, device)]


def writer(device: str, tid: int = 1) -> list[str]:
    """The image writer of a cp (tid: the target that must be there after
    the flush) or of an image copy (tid 0: no check)."""
    tools = ["dd", "blkdiscard -z", "fallocate --punch-hole", "blockdev"]
    check = f"tgtadm --lld iscsi --op show --mode target --tid {tid}" if tid else ""
    return ["sh", "-c", imagewriter.WRITER, "image-writer", device, "", check, *tools, *tools]


FILE_CP = [*file_volume(), *target(FILE), *saved(), writer(FILE)]
UNDO_ALL = [forget(), DELETE, RM_FILE]  # newest first: config file, target, volume


def server(backend: str = "file", dry_run: bool = False, **keys: str) -> Recorder:
    """Records as the target server tgt1 of a backend (file: in /srv/pool)."""
    keys = {"HOST": "tgt1", "BACKEND": backend, "POOL_DIR": "/srv/pool", "CONF_DIR": CONF_DIR, **keys}
    recorder = Recorder(make_config(**keys), dry_run=dry_run)
    recorder.answer(*SHOW, out=listing((1, IQN, (BACKENDS[backend][0],))))
    # a new target takes TID 1, where the hint says
    recorder.answer(*READ_HINT, out="1\n")
    recorder.answer("sh", "-c", tgt.NEW_TARGET, "new-target", "1", out="new 1\n")
    return recorder


@pytest.fixture
def pool() -> Recorder:
    return server("file")


@pytest.fixture
def image(tmp_path) -> str:
    """A raw image of data, a MiB of zeros, data: 2 MiB rounded up."""
    path = tmp_path / "image.img"
    path.write_bytes(b"\x01" * 1000 + bytes(MIB) + b"\x02" * 10)
    return str(path)


def records(path: str, zero_device: bool) -> bytes:
    """The record stream of a cp of the raw file at path over ssh."""
    with open(path, "rb") as data:
        stream = imagewriter.records(source.file_blocks(data.fileno()), os.path.getsize(path), zero_device,
                                     imagewriter.FILE_WINDOW)
        return b"".join(os.pread(data.fileno(), item.length, item.offset) if isinstance(item, imagewriter.Span)
                        else item for item in stream)


def cp(recorder: Recorder, path: str, tgt1=None, **options) -> Registered:
    return datastore.cp(path, 7, recorder.cfg, tgt1 or recorder.runner("tgt1"), recorder.runner("localhost"),
                        **options)


def mkfs(recorder: Recorder, fstype: str = "ext4", size_mb: int = 8) -> Registered:
    return datastore.mkfs(7, size_mb, fstype, recorder.cfg, recorder.runner("tgt1"))


def rm(recorder: Recorder, iqn: str = IQN) -> list[str]:
    return datastore.rm(iqn, 7, recorder.cfg, recorder.runner("tgt1"))


def failure_of(action, *args, **options) -> OneIscsiError:
    with pytest.raises(OneIscsiError) as caught:
        action(*args, **options)
    return caught.value


def refused(recorder: Recorder, action, *args, **options) -> str:
    """The message of action's refusal of bad input, checked to come before any command."""
    error = failure_of(action, *args, **options)
    assert isinstance(error, InvalidInput) and error.exit_code == 2
    assert recorder.calls == []
    return str(error)


def raising(error: Exception):
    """A callable that raises error, whatever it is given."""
    def fail(*args, **options):
        raise error
    return fail


# cp

@pytest.mark.parametrize("backend, zero_device", [("file", False), ("lvm", True)])
def test_cp_makes_volume_target_config_file_then_writes_the_image(image, backend, zero_device):
    recorder = server(backend)
    device, volume, _ = BACKENDS[backend]
    assert cp(recorder, image) == Registered(IQN, 2, ())
    # at the end, SHOW: the target is still there with its LUN
    assert recorder.argvs("tgt1") == [*volume("2M"), *target(device), *saved(), writer(device)]
    assert recorder.argvs("localhost") == []
    assert recorder.sessions == [("tgt1", True)]
    # the image's own lock for all of it, the target server's only while the target is made
    assert recorder.locks == [("hold", "tgt1", "/run/lock/one-iscsi.lock.vg-one.lv-one-7"),
                              ("release", "tgt1", "/run/lock/one-iscsi.lock")]
    fed = recorder.fed["tgt1"]
    assert fed == records(image, zero_device)
    # a new sparse file reads as zeros already; a new LV is zeroed first
    assert fed.startswith(b"D 0 ")  # no zero run: nothing zeroed but what follows the image (E ... 1)
    assert fed.endswith(f"E {IMAGE_SIZE} {int(zero_device)}\n".encode())


def test_cp_reports_progress_and_accepts_right_checksums(pool, image):
    with open(image, "rb") as data:
        content = data.read()
    reported = []
    checksums = {"md5": hashlib.md5(content).hexdigest().upper(), "sha1": hashlib.sha1(content).hexdigest()}
    assert cp(pool, image, checksums=checksums, progress_for=lambda size: reported.append) == Registered(IQN, 2)
    assert sum(reported) == IMAGE_SIZE


FAILING_STEPS = [  # the command that fails, its exit status and stderr, the error, the undo that follows
    pytest.param(FILE_CP[1], 1, f"dd: failed to open '{FILE}': File exists",
                 f"creating volume failed on tgt1: dd failed on tgt1 (exit 1): dd: failed to open '{FILE}': "
                 "File exists", [], id="creating the volume: nothing made, nothing removed"),
    pytest.param(FILE_CP[3], 1, f"truncate: failed to truncate '{FILE}': No space left on device",
                 f"creating volume failed on tgt1: truncate failed on tgt1 (exit 1): truncate: failed to truncate "
                 f"'{FILE}': No space left on device", [RM_FILE], id="sizing the volume"),
    pytest.param(make_target(1), 107, "tgtadm: can't send the request to the tgt daemon, Transport endpoint is "
                 "not connected", "creating target failed on tgt1: tgtd is not running on tgt1: start it (systemctl "
                 "start tgt), then `one-iscsi -H tgt1 target restore`: tgtadm failed on tgt1 (exit 107): tgtadm: can't send the request to the tgt daemon, Transport endpoint is not "
                 "connected", [RM_FILE], id="creating the target"),
    pytest.param(bind(1, "address", "ALL"), 22, "tgtadm: out of memory",
                 "allowing initiators failed on tgt1: tgtadm failed on tgt1 (exit 22): tgtadm: out of memory",
                 [DELETE, RM_FILE], id="allowing initiators"),
    pytest.param(new_lun(1, FILE), 22, "tgtadm: invalid request",
                 f"adding LUN 1 failed on tgt1: cannot add {FILE} as LUN 1 of TID 1 (missing device or LUN in "
                 "use?): tgtadm failed on tgt1 (exit 22): tgtadm: invalid request", [DELETE, RM_FILE],
                 id="adding LUN 1"),
    pytest.param(saved()[4], 1, "mv: cannot move: Read-only file system",
                 "writing the target's config file failed on tgt1: mv failed on tgt1 (exit 1): mv: cannot move: "
                 "Read-only file system", UNDO_ALL, id="writing the config file"),
    pytest.param(writer(FILE), 3, "image writer: the stream ended early",
                 "copying {image} to " + FILE + " failed on tgt1: sh failed on tgt1 (exit 3): image writer: the "
                 "stream ended early", UNDO_ALL, id="copying"),
]


@pytest.mark.parametrize("failing, rc, stderr, message, undo", FAILING_STEPS)
def test_cp_failing_step_takes_back_what_was_made(pool, image, failing, rc, stderr, message, undo):
    pool.fail(*failing, rc=rc, stderr=stderr)
    error = failure_of(cp, pool, image)
    assert isinstance(error, StepFailed)
    assert str(error) == message.format(image=image)
    assert (error.exit_code, error.rollback_failures) == (1, ())
    assert pool.argvs() == [*FILE_CP[:FILE_CP.index(failing) + 1], *undo]
    assert pool.sessions == [("tgt1", True), *([("tgt1", False)] if undo else [])]  # the undo in a session of its own


def test_cp_whose_lock_cannot_be_had_makes_nothing(pool, image, monkeypatch):
    busy = OneIscsiError("lock /run/lock/one-iscsi.lock on tgt1 is held by another one-iscsi for more than 60 s "
                         "(LOCK_TIMEOUT)")
    tgt1 = pool.runner("tgt1")
    monkeypatch.setattr(tgt1, "session", raising(busy))
    error = failure_of(cp, pool, image, tgt1=tgt1)
    assert str(error) == f"connecting and taking the lock failed on tgt1: {busy}"
    assert error.exit_code == 1
    assert pool.calls == []


def test_cp_with_a_wrong_checksum_takes_everything_back(pool, image):
    error = failure_of(cp, pool, image, checksums={"md5": "0" * 32})
    with open(image, "rb") as data:
        md5 = hashlib.md5(data.read()).hexdigest()
    assert str(error) == f"checking the image checksum failed on tgt1: MD5 of {image} is {md5}, expected {'0' * 32}"
    assert error.exit_code == 1
    assert pool.argvs() == [*FILE_CP, *UNDO_ALL]


def test_cp_bad_input_found_by_a_step_keeps_exit_status_2(pool, image):
    # as the real session refuses a config file holding its end marker
    pool.answer("dd", "conv=fsync", then=raising(InvalidInput("input contains the session marker")))
    error = failure_of(cp, pool, image)
    assert str(error) == "writing the target's config file failed on tgt1: input contains the session marker"
    assert error.exit_code == 2
    assert pool.argvs() == [*FILE_CP[:FILE_CP.index(saved()[2]) + 1], *UNDO_ALL]


def test_a_relative_pool_dir_is_refused_before_any_command(image):
    recorder = None
    with pytest.raises(OneIscsiError, match="POOL_DIR"):
        recorder = server(POOL_DIR="srv")
        cp(recorder, image)
    assert recorder is None or recorder.calls == []


def test_cp_binds_initiator_addresses_names_and_chap(image):
    recorder = server(INITIATORS=" ".join(ALLOWED), CHAP_USER=CHAP[0], CHAP_PASSWORD=CHAP[1])
    assert cp(recorder, image).source == IQN
    assert recorder.argvs()[4:11] == [READ_HINT, make_target(1), *allowed(1), new_lun(1, FILE)]


@pytest.mark.parametrize("failing", allowed(1), ids=["address", "name", "account", "account binding"])
def test_cp_failing_to_allow_initiators_deletes_the_target_and_the_volume(image, failing):
    recorder = server(INITIATORS=" ".join(ALLOWED), CHAP_USER=CHAP[0], CHAP_PASSWORD=CHAP[1])
    recorder.fail(*failing, rc=22, stderr="tgtadm: out of memory")
    error = failure_of(cp, recorder, image)
    assert str(error) == "allowing initiators failed on tgt1: tgtadm failed on tgt1 (exit 22): tgtadm: out of memory"
    assert recorder.argvs()[6:] == [*allowed(1)[:allowed(1).index(failing) + 1], DELETE, RM_FILE]


def test_cp_keeps_an_existing_target_with_the_same_lun(pool, image):
    pool.answer(*make_target(1), out="name 1\n")
    exported(pool, 4, stores=(FILE,))
    assert cp(pool, image) == Registered(IQN, 2, (f"target {IQN} already exists with TID 4: kept",))
    assert pool.argvs() == [*file_volume(), READ_HINT, make_target(1), *found(4), *found(4, sessions=True),
                            *found(4), writer(FILE, tid=4)]  # new, delete_if_empty, check_same


def test_cp_onto_an_existing_target_with_other_luns_removes_the_volume_again(pool, image):
    pool.answer(*make_target(1), out="name 1\n")
    exported(pool, 4, stores=("/srv/pool/vg-one/lv-one-8",))
    error = failure_of(cp, pool, image)
    assert str(error) == f"creating target failed on tgt1: target {IQN} already exists on tgt1 with other LUNs"
    assert pool.argvs() == [*file_volume(), READ_HINT, make_target(1), *found(4), *found(4, sessions=True),
                            *found(4), RM_FILE]


def test_cp_undo_that_fails_travels_with_the_error_and_the_other_undos_still_run(pool, image):
    pool.fail(*writer(FILE), rc=3, stderr="image writer: the stream ended early")
    pool.fail(*DELETE, rc=22, stderr="tgtadm: this target is still active")
    error = failure_of(cp, pool, image)
    assert error.rollback_failures == (
        "tgtadm --lld iscsi --op delete --force --mode target --tid 1: target TID 1 on tgt1 still has sessions: "
        "log the initiators out first, or use --force",)
    assert str(error).endswith(f"(and undoing it failed: {error.rollback_failures[0]})")
    assert pool.argvs() == [*FILE_CP, *UNDO_ALL]


def test_cp_dry_run_runs_only_queries(image):
    recorder = server(dry_run=True)
    assert cp(recorder, image, checksums={"md5": "0" * 32}) == Registered(IQN, 2)  # no checksum without data
    # the recording feed records the writer, which the real Runner prints under --dry-run
    assert recorder.argvs() == [READ_HINT, ["test", "-e", INCLUDE], writer(FILE)]


# mkfs

@pytest.mark.parametrize("fstype, made", [
    ("ext4", [["mkfs", "-t", "ext4", "-F", LV]]),
    ("ext3", [["mkfs", "-t", "ext3", "-F", LV]]),
    ("ntfs", [["mkfs", "-t", "ntfs", "-F", "-Q", LV]]),
    ("reiserfs", [["mkfs", "-t", "reiserfs", "-f", "-q", LV]]),
    ("swap", [["mkswap", LV]]),
    ("raw", []),
    ("save_as", []),  # a VM's disk is copied into it later: no filesystem, but volume and target
])
def test_mkfs_makes_volume_filesystem_and_target(recorder, fstype, made):
    recorder.answer(*READ_HINT, out="1\n")
    recorder.answer(*make_target(1), out="new 1\n")
    assert mkfs(recorder, fstype) == Registered(IQN, 8)
    assert recorder.argvs() == [*lv_volume("8M"), *made, *target(LV), *saved()]
    assert recorder.sessions == [("tgt1", True)]
    assert recorder.fed == {}


@pytest.mark.parametrize("fstype, size_mb, message", [
    ("-V", 8, "unsupported filesystem '-V'"),
    ("ext4;touch x", 8, "unsupported filesystem 'ext4;touch x'"),
    ("EXT4", 8, "unsupported filesystem 'EXT4'"),
    ("", 8, "unsupported filesystem ''"),  # the CLI maps an empty FSTYPE/FS, never datastore.mkfs
    (" ntfs ", 8, "unsupported filesystem ' ntfs '"),
    ("qcow2", 8, "unsupported filesystem 'qcow2'"),
    ("ext4", 0, "IMAGE/SIZE must be a positive number of MB, got 0"),
    ("raw", -8, "IMAGE/SIZE must be a positive number of MB, got -8"),
    ("save_as", 0, "IMAGE/SIZE must be a positive number of MB, got 0"),
])
def test_mkfs_refuses_bad_input_before_any_command(recorder, fstype, size_mb, message):
    assert refused(recorder, mkfs, recorder, fstype, size_mb).startswith(message)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mkfs_that_fails_removes_the_volume_before_any_target(backend):
    recorder = server(backend)
    device, volume, remove = BACKENDS[backend]
    recorder.fail("mkfs", rc=1, stderr="mkfs.ext4: Device size reported to be zero.")
    error = failure_of(mkfs, recorder)
    assert str(error) == ("making the filesystem failed on tgt1: mkfs failed on tgt1 (exit 1): "
                          "mkfs.ext4: Device size reported to be zero.")
    assert recorder.argvs() == [*volume("8M"), ["mkfs", "-t", "ext4", "-F", device], remove]


# rm

@pytest.mark.parametrize("backend", BACKENDS)
def test_rm_deletes_target_config_file_and_volume(backend):
    recorder = server(backend)
    device, _, remove = BACKENDS[backend]
    exported(recorder, 3, stores=(device,))
    assert rm(recorder) == []
    assert recorder.argvs() == [*found(3, sessions=True), delete_target(3), forget(), remove]  # no listing, no look at LIO
    assert recorder.sessions == [("tgt1", False)]


def test_rm_of_what_is_gone_already_says_so(recorder):
    recorder.fail(*LVREMOVE, rc=5, stderr='  Failed to find logical volume "vg-one/lv-one-7"')
    no_file(recorder)
    assert rm(recorder) == [f"no target {IQN} on tgt1: already deleted", f"no volume {LV} on tgt1: already removed"]
    assert recorder.argvs() == [cat(), SHOW, forget(), LVREMOVE]


def test_rm_of_a_volume_that_cannot_be_removed(recorder):
    recorder.fail(*LVREMOVE, rc=5, stderr="  Logical volume vg-one/lv-one-7 in use.")
    error = failure_of(rm, recorder)
    assert str(error) == f"removing {LV} failed on tgt1: lvremove failed on tgt1 (exit 5): " \
                         "Logical volume vg-one/lv-one-7 in use."
    assert error.exit_code == 1


def test_rm_of_a_target_in_use_removes_nothing(recorder):
    exported(recorder, 3, stores=(LV,), initiators=("iqn.2008-11.org.x:node1", "iqn.2008-11.org.x:node2"))
    error = failure_of(rm, recorder)
    assert str(error) == f"target {IQN} on tgt1 is in use by iqn.2008-11.org.x:node1, iqn.2008-11.org.x:node2: " \
                         "nothing removed"
    assert recorder.argvs() == found(3, sessions=True)


@pytest.mark.parametrize("iqn, message", [
    *[(iqn, f"SOURCE {iqn} is not image 7 of this datastore (that is {IQN})") for iqn in [
        f"{BASE}:tgt1.vg-one.lv-one-8", f"{BASE}:tgt1.vg-two.lv-one-7", f"{BASE}:tgt2.vg-one.lv-one-7",
        f"{BASE}:10.0.0.1.vg-one.lv-one-7", "iqn.2020-01.org.other:tgt1.vg-one.lv-one-7"]],
    (f"{BASE}:tgt1.vg-one.root", "is not image 7"),
    (f"{BASE}:tgt1.vg_one.lv-one-7", "contains characters tgtd refuses: '_'"),
    (f"{IQN};touch x", "contains characters tgtd refuses"),
    (f"{BASE}:lv-one-7", "is not of the form BASE_IQN:HOST.VG.LV"),
    ("-iqn", "is not of the form iqn.YYYY-MM"),
    ("", "IQN is empty"),
])
def test_rm_refuses_a_source_of_another_image_before_any_command(recorder, iqn, message):
    assert message in refused(recorder, rm, recorder, iqn)


# stat, monitor

def test_stat_is_the_size_in_whole_mib_rounded_up(recorder, tmp_path):
    sizes = {"empty": 0, "one": MIB, "more": MIB + 1}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"\x01" * size)
    stat = [datastore.stat(str(tmp_path / name), recorder.cfg, recorder.runner("localhost")) for name in sizes]
    assert stat == [0, 1, 2]
    assert recorder.calls == []


def qcow2(tmp_path, recorder, **info) -> str:
    """A qcow2 image whose `qemu-img info` says info."""
    path = tmp_path / "disk.qcow2"
    path.write_bytes(b"QFI\xfb" + bytes(60))
    recorder.answer("qemu-img", "info", out=json.dumps(info))
    return str(path)


def test_stat_of_a_qcow2_image_asks_qemu_img_on_this_machine(recorder, tmp_path):
    path = qcow2(tmp_path, recorder, **{"virtual-size": 3 * MIB + 1})
    assert datastore.stat(path, recorder.cfg, recorder.runner("localhost")) == 4
    opened = recorder.calls[0][1][-1]  # the file as opened, never its name again
    assert opened.startswith(f"/proc/{os.getpid()}/fd/")
    assert recorder.calls == [("localhost", ["qemu-img", "info", "--output=json", "-f", "qcow2", opened])]


def test_stat_refuses_a_qcow2_image_using_another_file(recorder, tmp_path):
    path = qcow2(tmp_path, recorder, **{"virtual-size": MIB, "backing-filename": "/var/lib/one/secret"})
    with pytest.raises(InvalidInput, match="uses another file \\(/var/lib/one/secret\\): not supported"):
        datastore.stat(path, recorder.cfg, recorder.runner("localhost"))


def test_cp_of_a_qcow2_image_streams_its_raw_data_and_checks_the_file_as_registered(pool, tmp_path):
    path = qcow2(tmp_path, pool, **{"virtual-size": 3000})
    pool.answer("nbdcopy", out="\x01" * 3000)
    with open(path, "rb") as original:
        md5 = hashlib.md5(original.read()).hexdigest()
    assert cp(pool, path, checksums={"md5": md5}) == Registered(IQN, 1)
    real = pool.argvs("localhost")[0][-1]
    assert real.startswith(f"/proc/{os.getpid()}/fd/")
    assert pool.argvs("localhost") == [["qemu-img", "info", "--output=json", "-f", "qcow2", real],
                                       ["nbdcopy", "--", "[", "qemu-nbd", "-r", "-f", "qcow2", real, "]", "-"]]
    assert pool.fed["tgt1"] == b"D 0 3000\n" + b"\x01" * 3000 + b"E 3000 0\n"  # a new sparse file: no zeroing


def test_cp_dry_run_of_a_qcow2_image(tmp_path, monkeypatch):
    recorder = server(dry_run=True)
    path = qcow2(tmp_path, recorder, **{"virtual-size": MIB})
    tgt1, local = recorder.runner("tgt1"), recorder.runner("localhost")
    monkeypatch.setattr(tgt1, "feed", lambda cmd, chunks: None)  # as Runner.feed under --dry-run: reads nothing

    @contextmanager
    def output_stream(cmd):  # as Runner.output_stream: a command whose output is left unread dies of SIGPIPE
        stream = io.BytesIO(b"\x01" * MIB)
        yield stream
        if stream.read(1):
            raise failure(cmd, "localhost", -13, "")

    monkeypatch.setattr(local, "output_stream", output_stream)
    assert datastore.cp(path, 7, recorder.cfg, tgt1, local) == Registered(IQN, 1)


@pytest.mark.parametrize("dry_run", [False, True], ids=["", "dry run"])
@pytest.mark.parametrize("backend, words, out, commands, usage", [
    ("file", ["df"], "     1B-blocks        Avail\n 10737418240 5368709120\n",
     [["mkdir", "-p", "/srv/pool/vg-one"], ["df", "-B1", "--output=size,avail", "/srv/pool/vg-one"]],
     Usage(10240, 5120)),
    ("lvm", ["vgs"], "  268435456:100663296\n",
     [["vgs", "--noheadings", "--units", "b", "--nosuffix", "--separator", ":", "-o", "vg_size,vg_free", "vg-one"]],
     Usage(256, 96)),
])
def test_monitor_asks_the_pool_for_its_usage(backend, words, out, commands, usage, dry_run):
    recorder = server(backend, dry_run=dry_run)
    recorder.answer(*words, out=out)
    assert datastore.monitor(recorder.cfg, recorder.runner("tgt1")) == usage
    assert recorder.argvs() == commands
    assert recorder.sessions == [("tgt1", False)]


def test_usage_in_use():
    assert Usage(256, 96).used_mb == 160


# check_allowed, copy

def check(path, **keys: str) -> None:
    datastore.check_allowed(str(path), make_config(**keys))


@pytest.mark.parametrize("path", ["/var/lib/one/datastores/1/x.img", "/var/lib/one", "/var/lib/one/",
                                  "/etc/one/oned.conf", "/tmp/../var/lib/one/x", "//etc//one//x"])
def test_check_allowed_refuses_the_restricted_directories(path):
    with pytest.raises(InvalidInput) as caught:
        check(path)
    assert str(caught.value) == f"Not allowed to copy image file {path}"


@pytest.mark.parametrize("path", ["/var/lib/one-images/x.img", "/etc/onesie/x.img", "/srv/images/x.img",
                                  "http://example.com/var/lib/one/x.img"])
def test_check_allowed_judges_whole_path_components_and_lets_urls_through(path):
    check(path)


def test_check_allowed_refuses_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(InvalidInput):
        check(tmp_path / "home" / "x.img")
    check(tmp_path / "home-not" / "x.img")


def test_restricted_dirs_and_the_safe_dirs_inside_them(tmp_path):
    keys = {"RESTRICTED_DIRS": f"{tmp_path}/secret {tmp_path}/a/b",
            "SAFE_DIRS": f"{tmp_path}/secret/public {tmp_path}/a"}
    for path in ["secret/x.img", "a/b/x.img", "a/b/c/x.img"]:  # the deepest directory decides
        with pytest.raises(InvalidInput):
            check(tmp_path / path, **keys)
    for path in ["secret/public/x.img", "a/x.img", "secret-not/x.img", "x.img"]:
        check(tmp_path / path, **keys)


def test_check_allowed_resolves_symlinks(tmp_path):
    secret, plain = tmp_path / "secret", tmp_path / "plain.img"
    secret.mkdir()
    (tmp_path / "link.img").symlink_to(secret / "x.img")
    (tmp_path / "dir").symlink_to(secret)
    (secret / "out.img").symlink_to(plain)
    for path in ["link.img", "dir/x.img"]:
        with pytest.raises(InvalidInput):
            check(tmp_path / path, RESTRICTED_DIRS=str(secret))
    with pytest.raises(InvalidInput):  # a restricted directory given by a link
        check(secret / "x.img", RESTRICTED_DIRS=str(tmp_path / "dir"))
    check(secret / "out.img", RESTRICTED_DIRS=str(secret))  # judged where the data really is


def device_size(device: str) -> list[str]:
    return ["sh", "-c", imagewriter.SIZE_OF + 'blockdev=$2; size_of "$1"', "device-size", device, "blockdev"]


def copy(recorder, image, room: int = IMAGE_SIZE, **options):
    recorder.answer("device-size", out=f"{room}\n")
    return datastore.copy(image, "/dev/sdb", recorder.cfg, recorder.runner("tgt1"), recorder.runner("localhost"),
                          **options)


def test_copy_writes_onto_an_existing_device_zeroed_first(recorder, image):
    reported = []
    assert copy(recorder, image, progress_for=lambda size: reported.append) == sum(reported) == IMAGE_SIZE
    assert recorder.argvs() == [device_size("/dev/sdb"), writer("/dev/sdb", tid=0)]
    assert recorder.fed["tgt1"] == records(image, zero_device=True)


def test_copy_of_an_image_larger_than_the_device_writes_nothing(recorder, image):
    with pytest.raises(InvalidInput) as refused_:
        copy(recorder, image, room=IMAGE_SIZE - 1)
    assert str(refused_.value) == (f"{image} ({IMAGE_SIZE} bytes) does not fit on /dev/sdb ({IMAGE_SIZE - 1} "
                                   "bytes) on tgt1: nothing written")
    assert recorder.argvs() == [device_size("/dev/sdb")]


def test_copy_onto_a_missing_device_says_so(recorder, image):
    recorder.fail("device-size", stderr="stat: cannot statx '/dev/sdb': No such file or directory")
    with pytest.raises(NotFound, match="^no device or file /dev/sdb on tgt1$"):
        datastore.copy(image, "/dev/sdb", recorder.cfg, recorder.runner("tgt1"), recorder.runner("localhost"))


def test_copy_that_fails_while_writing_says_the_device_is_half_written(recorder, image):
    recorder.fail("image-writer", rc=3, stderr="image writer: the stream ended early")
    with pytest.raises(OneIscsiError) as failed:
        copy(recorder, image)
    assert str(failed.value).endswith("; /dev/sdb on tgt1 is half written: its old content is gone, write it again")


@pytest.mark.parametrize("device, path, message", [
    ("sdb", "image", "device must be an absolute path, got 'sdb'"),
    ("/dev/sdb", "/etc/one/oned.conf", "Not allowed to copy image file /etc/one/oned.conf"),
])
def test_copy_refuses_bad_input_before_any_command(recorder, image, device, path, message):
    path = image if path == "image" else path
    assert refused(recorder, datastore.copy, path, device, recorder.cfg, recorder.runner("tgt1"),
                   recorder.runner("localhost")) == message


# hostile input (tests/integration/test_hostile_input.py), in this process

@pytest.mark.parametrize("keys, message", [
    *[({"VG_NAME": vg}, f"VG_NAME cannot be part of a target name (letters, digits and '-' only, not starting "
                        f"with '-'), got {vg!r}")
      for vg in ["vg_one", "vg one", "vg;touch x", "-vg", "vg.one", "vg/../../etc", "vg$(touch x)"]],
    *[({"HOST": host}, f"HOST must be a host name (letters, digits, '.' and '-' only), got {host!r}")
      for host in ["-oProxyCommand=touch x", "host;reboot", "a b", "host\nx", "h$(touch x)"]],
    ({"BASE_IQN": "iqn.2012-02.org x"}, "BASE_IQN contains characters tgtd refuses: ' '"),
    ({"BASE_IQN": "iqn.2012-02.org:x"}, "BASE_IQN must not contain ':'"),
])
def test_hostile_configuration_is_refused_before_any_runner(keys, message):
    with pytest.raises(ConfigError) as refused:
        make_config(**{"HOST": "tgt1", **keys})
    assert str(refused.value).startswith(message)
    assert refused.value.exit_code == 2


@pytest.mark.parametrize("host", ["-oProxyCommand=touch x", "host;reboot", "a b", "h$(touch x)"])
def test_hostile_host_gets_no_runner(recorder, host):
    with pytest.raises(InvalidInput, match="invalid host name"):
        recorder.runner(host)


@pytest.mark.parametrize("path, message", [
    ("-rf", "cannot read image file -rf: No such file or directory"),
    ("/tmp/x$(touch one-iscsi-canary)", "cannot read image file /tmp/x$(touch one-iscsi-canary): No such file"),
    ("/tmp", "cannot read image file /tmp: Is a directory"),
    ("ftp://x/$(touch y)", "cannot read image file ftp://x/$(touch y)"),
    ("/etc/one/oned.conf", "Not allowed to copy image file /etc/one/oned.conf"),
    ("/tmp/../var/lib/one/x", "Not allowed to copy image file /tmp/../var/lib/one/x"),
])
def test_hostile_path_is_refused_before_any_command(recorder, path, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert refused(recorder, cp, recorder, path).startswith(message)


# what is checked is what is read (tests/integration/test_image_opened_once.py against the real tgtd)

def swap_for_link(name: str, to: str):
    """A callable that makes name a symlink to to, as an attacker would."""
    def swap():
        os.symlink(to, name + ".swap")
        os.replace(name + ".swap", name)
    return swap


def test_cp_reads_the_file_checked_even_if_its_name_is_swapped_while_the_volume_is_made(pool, image, tmp_path):
    (tmp_path / "restricted").mkdir()
    secret = tmp_path / "restricted" / "secret.img"
    secret.write_bytes(b"canary" * 1000)
    original = records(image, zero_device=False)
    pool.answer("truncate", then=swap_for_link(image, str(secret)))
    assert cp(pool, image) == Registered(IQN, 2)
    assert os.path.realpath(image) == str(secret)
    assert pool.fed["tgt1"] == original


def test_cp_of_a_qcow2_image_checksums_the_file_opened_not_its_name(pool, tmp_path):
    path = qcow2(tmp_path, pool, **{"virtual-size": 3000})
    pool.answer("nbdcopy", out="\x01" * 3000)
    with open(path, "rb") as original:
        md5 = hashlib.md5(original.read()).hexdigest()
    (tmp_path / "other.img").write_bytes(b"other")
    pool.answer("truncate", then=swap_for_link(path, str(tmp_path / "other.img")))
    assert cp(pool, path, checksums={"md5": md5}) == Registered(IQN, 1)
    opened = pool.argvs("localhost")[0][-1]
    assert opened.startswith(f"/proc/{os.getpid()}/fd/")
    assert pool.argvs("localhost")[1] == ["nbdcopy", "--", "[", "qemu-nbd", "-r", "-f", "qcow2", opened, "]", "-"]


def test_cp_of_a_link_into_a_restricted_directory_is_refused_before_any_command(tmp_path):
    (tmp_path / "restricted").mkdir()
    (tmp_path / "restricted" / "secret.img").write_bytes(b"canary")
    (tmp_path / "image.img").symlink_to(tmp_path / "restricted" / "secret.img")
    recorder = server(RESTRICTED_DIRS=str(tmp_path / "restricted"))
    assert refused(recorder, cp, recorder, str(tmp_path / "image.img")) == \
        f"Not allowed to copy image file {tmp_path / 'image.img'}"


def test_stat_and_copy_close_the_image_they_open(recorder, image):
    before = set(os.listdir("/proc/self/fd"))
    assert datastore.stat(image, recorder.cfg, recorder.runner("localhost")) == 2
    copy(recorder, image)
    recorder.fail("image-writer", rc=3, stderr="image writer: the stream ended early")
    with pytest.raises(OneIscsiError):
        copy(recorder, image)
    assert set(os.listdir("/proc/self/fd")) == before


# one image, one owner at a time (tests/integration/test_one_owner.py against the real tgtd)

def test_cp_fails_and_takes_everything_back_when_the_target_is_gone_at_the_end(pool, image):
    # tgtd died or was restarted without it during the copy: the writer's check after the flush says so
    pool.fail(*writer(FILE), rc=imagewriter.CHECK_FAILED_RC, stderr="tgtadm: can't find the target\n")
    error = failure_of(cp, pool, image)
    assert str(error) == (f"copying {image} to {FILE} failed on tgt1: target {IQN} (TID 1) is no longer exported "
                          "on tgt1: tgtadm: can't find the target")
    assert pool.argvs() == [*FILE_CP, *UNDO_ALL]


def test_mkfs_and_rm_hold_the_image_lock(pool):
    mkfs(pool)
    datastore.rm(IQN, 7, pool.cfg, pool.runner("tgt1"))
    held = ("hold", "tgt1", "/run/lock/one-iscsi.lock.vg-one.lv-one-7")
    assert pool.locks == [held, held]
    assert pool.sessions == [("tgt1", True), ("tgt1", False)]


def test_cp_takes_over_a_target_left_without_its_lun(pool, image):
    """What tgt's start-up leaves of a saved target whose backing store it could not open."""
    pool.answer(*make_target(1), out="name 1\n", times=1)
    no_file(pool)  # tgt's start-up made it anew, unmarked: found in the listing
    pool.answer(*SHOW, out=listing((4, IQN)))
    assert cp(pool, image) == Registered(IQN, 2)
    assert pool.argvs()[4:13] == [READ_HINT, make_target(1), cat(), SHOW, cat(), SHOW, delete_target(4), READ_HINT,
                                  make_target(1)]


# cp of a qcow2 image the VM reads as qcow2 (DRIVER=qcow2)

def test_cp_keeping_qcow2_copies_the_file_as_it_is_into_a_volume_of_its_full_allocation(pool, tmp_path):
    path = qcow2(tmp_path, pool, **{"virtual-size": 64 * MIB})
    pool.answer("qemu-img", "measure", out=json.dumps({"required": 400000, "fully-allocated": 3 * MIB + 1}))
    with open(path, "rb") as original:
        md5 = hashlib.md5(original.read()).hexdigest()
    assert cp(pool, path, checksums={"md5": md5}, keep_qcow2=True) == Registered(IQN, 4, (), "qcow2")
    opened = pool.argvs("localhost")[0][-1]
    assert opened.startswith(f"/proc/{os.getpid()}/fd/")
    assert pool.argvs("localhost") == [["qemu-img", "info", "--output=json", "-f", "qcow2", opened],
                                       ["qemu-img", "measure", "--output=json", "-f", "qcow2", "-O", "qcow2", opened]]
    assert pool.argvs("tgt1") == [*file_volume("4M"), *target(FILE), *saved(), writer(FILE)]
    assert pool.fed["tgt1"] == records(path, zero_device=False)  # the file's own bytes, no nbdcopy


def test_stat_keeping_qcow2_is_the_full_allocation(recorder, tmp_path):
    path = qcow2(tmp_path, recorder, **{"virtual-size": 64 * MIB})
    recorder.answer("qemu-img", "measure", out=json.dumps({"fully-allocated": 65 * MIB + 1}))
    assert datastore.stat(path, recorder.cfg, recorder.runner("localhost"), keep_qcow2=True) == 66
    assert datastore.stat(path, recorder.cfg, recorder.runner("localhost")) == 64


# clone: a new image copied from another on the target server

IQN9 = f"{BASE}:tgt1.vg-one.lv-one-9"
FILE9 = "/srv/pool/vg-one/lv-one-9"
LV9 = "/dev/vg-one/lv-one-9"


def copier(source_device: str, device: str, zero: str) -> list[str]:
    return ["sh", "-c", imagewriter.COPIER, "volume-copy", source_device, device, "dd", "blkdiscard -z",
            "fallocate --punch-hole", "blockdev", zero]


def clone_server(backend: str, **keys: str) -> Recorder:
    recorder = server(backend, **keys)
    device9 = {"file": FILE9, "lvm": LV9}[backend]
    exported(recorder, 1, IQN9, (device9,))  # once made
    recorder.answer("stat", "-c", out="8388608\n")
    recorder.answer("lvs", "-o", "lv_size", out="  8388608\n")
    return recorder


def clone(recorder: Recorder, source_iqn: str = IQN) -> Registered:
    return datastore.clone(source_iqn, 9, recorder.cfg, recorder.runner("tgt1"))


@pytest.mark.parametrize("backend, measure, volume, zero", [
    ("file", ["stat", "-c", "%s", FILE],
     [["mkdir", "-p", "/srv/pool/vg-one"], ["dd", f"of={FILE9}", "conv=excl", "count=0", "status=none"],
      ["chmod", "0600", FILE9], ["truncate", "-s", "8M", FILE9]], "0"),  # a new sparse file reads as zeros
    ("lvm", ["lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size", "vg-one/lv-one-7"],
     [["lvcreate", "--yes", "-W", "y", "-L", "8M", "-n", "lv-one-9", "vg-one"]], "1"),
])
def test_clone_makes_a_volume_and_target_of_the_source_size_and_copies_on_the_target_server(
        backend, measure, volume, zero):
    recorder = clone_server(backend)
    source_device, device = {"file": (FILE, FILE9), "lvm": (LV, LV9)}[backend]
    assert clone(recorder) == Registered(IQN9, 8, (), "raw")
    assert recorder.argvs() == [measure, *volume, *target(device, IQN9), *saved(IQN9),
                                copier(source_device, device, zero), *found(1, IQN9)]
    assert recorder.locks == [("hold", "tgt1", "/run/lock/one-iscsi.lock.vg-one.lv-one-9"),
                              ("release", "tgt1", "/run/lock/one-iscsi.lock")]
    assert recorder.fed == {}  # nothing crosses from here


def test_clone_gives_the_new_image_this_datastores_access_rules():
    recorder = clone_server("file", INITIATORS=" ".join(ALLOWED), CHAP_USER=CHAP[0], CHAP_PASSWORD=CHAP[1])
    clone(recorder)
    assert recorder.argvs()[6:12] == [make_target(1, IQN9), *allowed(1), new_lun(1, FILE9)]


def test_clone_whose_copy_fails_takes_everything_back():
    recorder = clone_server("file")
    recorder.fail("volume-copy", rc=4, stderr=f"volume copy: {FILE} (9 bytes) does not fit in {FILE9} (8 bytes)")
    error = failure_of(clone, recorder)
    assert str(error) == (f"copying {FILE} to {FILE9} failed on tgt1: sh failed on tgt1 (exit 4): volume copy: "
                          f"{FILE} (9 bytes) does not fit in {FILE9} (8 bytes)")
    assert recorder.argvs()[-4:] == [copier(FILE, FILE9, "0"), forget(IQN9), DELETE, ["rm", "-f", FILE9]]


def test_clone_of_a_source_that_is_gone_makes_nothing(pool):
    pool.fail("stat", "-c", stderr=f"stat: cannot statx '{FILE}': No such file or directory")
    error = failure_of(clone, pool)
    assert str(error) == f"measuring {FILE} failed on tgt1: no volume {FILE} on tgt1"
    assert pool.argvs() == [["stat", "-c", "%s", FILE]]


@pytest.mark.parametrize("source_iqn, message", [
    (f"{BASE}:tgt2.vg-one.lv-one-7", f"image {BASE}:tgt2.vg-one.lv-one-7 is on target server tgt2, this "
                                     "datastore's is tgt1: cloned images stay on their target server"),
    (f"{IQN};x", "contains characters tgtd refuses"),
    ("", "IQN is empty"),
])
def test_clone_refuses_a_source_it_cannot_copy_before_any_command(pool, source_iqn, message):
    assert message in refused(pool, clone, pool, source_iqn)


def test_private_copy_takes_the_access_rules_the_image_was_saved_with(pool):
    private = f"{BASE}:tgt1.vg-one.lv-one-9-0"
    spec = tgtconf.TargetSpec(IQN, (FILE,), ALLOWED, *CHAP)
    pool.answer("cat", "--", conf(), out=tgtconf.render(spec))
    pool.answer("stat", "-c", out="8388608\n")
    exported(pool, 1, private, ("/srv/pool/vg-one/lv-one-9-0",))
    done = datastore.private_copy(names.parse(IQN), 9, 0, pool.cfg, pool.runner("tgt1"))
    assert done == Registered(private, 8, (), "raw")
    assert pool.argvs()[:2] == [lio_probe(), ["cat", "--", conf()]]
    assert pool.argvs()[8:14] == [make_target(1, private), *allowed(1), new_lun(1, "/srv/pool/vg-one/lv-one-9-0")]
    assert pool.argvs()[-3] == copier(FILE, "/srv/pool/vg-one/lv-one-9-0", "0")


# copy_into (save-as), grow, remove

IQN8 = f"{BASE}:tgt1.vg-one.lv-one-8"


def test_copy_into_zeroes_the_image_written_even_of_the_file_backend(pool):
    exported(pool, 2, IQN8, ("/srv/pool/vg-one/lv-one-8",))
    pool.answer("volume-copy", out="copied 8388608 bytes\n")
    assert datastore.copy_into(IQN, IQN8, pool.cfg, pool.runner("tgt1")) == "copied 8388608 bytes"
    assert pool.argvs() == [lio_probe(IQN8), *found(2, IQN8), copier(FILE, "/srv/pool/vg-one/lv-one-8", "1")]
    assert pool.locks == [("hold", "tgt1", "/run/lock/one-iscsi.lock.vg-one.lv-one-8")]


@pytest.mark.parametrize("backend, grow", [
    ("file", ["truncate", "-s", "16M", FILE]), ("lvm", ["lvextend", "-L", "16M", "vg-one/lv-one-7"])])
def test_grow_grows_the_volume_then_adds_lun_1_again(backend, grow):
    recorder = server(backend)
    device = BACKENDS[backend][0]
    exported(recorder, 3, stores=(device,))
    recorder.answer("stat", "-c", out="8388608\n")
    recorder.answer("lvs", "-o", "lv_size", out="  8388608\n")
    assert datastore.grow(IQN, 16, recorder.cfg, recorder.runner("tgt1")) == f"grew {device} from 8 to 16 MiB"
    assert recorder.argvs()[1:] == [lio_probe(), *found(3), grow, readd_lun(3, device)]


@pytest.mark.parametrize("size_mb", [8, 4])
def test_grow_never_shrinks(pool, size_mb):
    pool.answer("stat", "-c", out="8388608\n")
    assert datastore.grow(IQN, size_mb, pool.cfg, pool.runner("tgt1")) == f"{FILE} already has 8 MiB: not shrunk"
    assert pool.argvs() == [["stat", "-c", "%s", FILE]]


def test_grow_of_an_image_without_target_grows_nothing(pool):
    pool.answer("stat", "-c", out="8388608\n")
    pool.answer(*SHOW, out="")
    no_file(pool)
    with pytest.raises(NotFound, match=f"no target named {IQN} on tgt1"):
        datastore.grow(IQN, 16, pool.cfg, pool.runner("tgt1"))
    assert pool.argvs() == [["stat", "-c", "%s", FILE], lio_probe(), cat(), SHOW]


def test_remove_deletes_any_volume_it_is_named(recorder):
    private = f"{BASE}:tgt1.vg-one.lv-one-9-0"
    exported(recorder, 6, private, ("/dev/vg-one/lv-one-9-0",))
    assert datastore.remove(names.parse(private), recorder.cfg, recorder.runner("tgt1")) == []
    assert recorder.argvs() == [lio_probe(private), *found(6, private, sessions=True), delete_target(6),
                                forget(private), ["lvremove", "-f", "vg-one/lv-one-9-0"]]
    assert recorder.locks == [("hold", "tgt1", "/run/lock/one-iscsi.lock.vg-one.lv-one-9-0")]


# a transfer action on a LIO target server: iscsi.conf says tgt, the target tells

PRIVATE_LV = "/dev/vg-one/lv-one-9-0"


def lio_server(*iqns: str) -> Recorder:
    """A target server whose LIO has the targets iqns (TARGET is tgt, as a
    transfer action's iscsi.conf may say)."""
    recorder = server("lvm")
    for iqn in iqns:
        recorder.answer(*lio_probe(iqn))
    return recorder


def lio_requests(recorder: Recorder) -> list[dict]:
    """The requests sent to lioprogram.py, in order."""
    return [json.loads(ast.literal_eval(cmd.input.rsplit("\nmain(", 1)[1].rstrip()[:-1]))
            for cmd in recorder.commands if cmd.argv[:2] == ("python3", "-")]


def test_private_copy_of_an_image_on_lio_is_made_on_lio_with_the_images_access_rules():
    recorder = lio_server(IQN)
    shown = {"target": {"iqn": IQN, "luns": [{"lun": 1, "path": LV}], "acl": [ALLOWED[1]],
                        "chap_user": CHAP[0], "chap_password": CHAP[1], "sessions": []}}
    recorder.answer("python3", "-", out=json.dumps(shown))
    recorder.answer("lvs", "-o", "lv_size", out="  8388608\n")
    private = f"{BASE}:tgt1.vg-one.lv-one-9-0"
    recorder.answer("test", "-d", f"/sys/kernel/config/target/iscsi/{private}/tpgt_1/lun/lun_1")
    done = datastore.private_copy(names.parse(IQN), 9, 0, recorder.cfg, recorder.runner("tgt1"))
    assert done == Registered(private, 8, (), "raw")
    show, create = lio_requests(recorder)
    assert show["op"] == "show" and show["secrets"] is True
    assert (create["op"], create["iqn"], create["edits"]) == (
        "change", private, [["new"], ["chap", *CHAP], ["lun_add", 1, PRIVATE_LV, "vg-one.lv-one-9-0"],
                            ["allow", [ALLOWED[1]]]])
    copy = recorder.argvs()[-2]
    assert copy[:5] == ["sh", "-c", imagewriter.COPIER, "volume-copy", LV] and "blkdiscard -f -z" in copy
    assert recorder.argvs()[-1] == ["test", "-d", f"/sys/kernel/config/target/iscsi/{private}/tpgt_1/lun/lun_1"]
    assert not any(argv[0] == "tgtadm" for argv in recorder.argvs())


def test_private_copy_refuses_access_rules_no_datastore_could_have_set():
    recorder = lio_server(IQN)
    shown = {"target": {"iqn": IQN, "luns": [], "acl": ["iqn.x;rm -rf /"], "chap_user": "", "sessions": []}}
    recorder.answer("python3", "-", out=json.dumps(shown))
    with pytest.raises(OneIscsiError, match=f"the access rules of target {IQN} on tgt1 are not one-iscsi's"):
        datastore.private_copy(names.parse(IQN), 9, 0, recorder.cfg, recorder.runner("tgt1"))
    assert not any(argv[0] == "lvcreate" for argv in recorder.argvs())


def test_grow_on_lio_grows_the_block_device_lio_reads_the_size_of():
    recorder = lio_server(IQN)
    recorder.answer("lvs", "-o", "lv_size", out="  8388608\n")
    assert datastore.grow(IQN, 16, recorder.cfg, recorder.runner("tgt1")) == f"grew {LV} from 8 to 16 MiB"
    assert recorder.argvs()[1:] == [lio_probe(), ["lvextend", "-L", "16M", "vg-one/lv-one-7"]]


def test_grow_on_lio_refuses_a_file_whose_size_lio_took_when_exporting_it():
    recorder = server("file")
    recorder.answer(*lio_probe())
    recorder.answer("stat", "-c", out="8388608\n")
    with pytest.raises(OneIscsiError, match="LIO takes a file's size when it exports it"):
        datastore.grow(IQN, 16, recorder.cfg, recorder.runner("tgt1"))
    assert not any(argv[0] == "truncate" for argv in recorder.argvs())


def test_copy_into_an_image_on_lio_writes_the_device_lio_holds():
    recorder = lio_server(IQN8)
    recorder.answer("volume-copy", out="copied 8388608 bytes\n")
    assert datastore.copy_into(IQN, IQN8, recorder.cfg, recorder.runner("tgt1")) == "copied 8388608 bytes"
    [probe, copy] = recorder.argvs()
    assert probe == lio_probe(IQN8) and "blkdiscard -f -z" in copy and copy[4:6] == [LV, "/dev/vg-one/lv-one-8"]


def test_remove_of_a_target_on_lio_asks_lio():
    recorder = lio_server(IQN)
    recorder.answer("python3", "-", out=json.dumps({"deleted": True, "target": None}))
    assert datastore.remove(names.parse(IQN), recorder.cfg, recorder.runner("tgt1")) == []
    assert [argv[:2] for argv in recorder.argvs()] == [lio_probe()[:2], ["python3", "-"], LVREMOVE[:2]]


# the restricted directories of a self-contained install

def test_builtin_restricted_directories_follow_one_location(tmp_path):
    assert datastore.builtin_restricted(make_config()) == ("/var/lib/one", "/etc/one")
    assert datastore.builtin_restricted(make_config(ONE_LOCATION=str(tmp_path))) == (
        f"{tmp_path}/var", f"{tmp_path}/etc")
    assert config.load(env={"ONE_LOCATION": str(tmp_path)}).one_location == str(tmp_path)


def test_check_allowed_with_one_location_refuses_its_var_and_etc_only(tmp_path):
    keys = {"ONE_LOCATION": str(tmp_path / "one")}
    for path in ["one/var/datastores/1/x.img", "one/etc/oned.conf", "one/var"]:
        with pytest.raises(InvalidInput, match="^Not allowed to copy image file"):
            check(tmp_path / path, **keys)
    for path in ["/var/lib/one/datastores/1/x.img", "/etc/one/oned.conf", tmp_path / "one" / "share" / "x.img",
                 tmp_path / "one-var" / "x.img"]:
        check(path, **keys)
