"""The image source: a local file opened once, judged by the file opened and
read only through that descriptor, whatever its name points at later."""
import json
import os

import pytest
from support.recording import make_config

from oneiscsi import datastore, source
from oneiscsi.errors import InvalidInput
from oneiscsi.units import MIB


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def anything(real: str) -> None:
    """An `allowed` that allows every file."""


def judged_by(path, **keys: str):
    """The `allowed` of the datastore actions: check_allowed of path, on the real path of the file opened."""
    return lambda real: datastore.check_allowed(str(path), make_config(**keys), real)


def refusal(path, recorder, allowed=anything) -> str:
    """The message of inspect's refusal of path, checked to leave no descriptor open and run nothing."""
    before = open_fds()
    with pytest.raises(InvalidInput) as caught:
        source.inspect(str(path), recorder.runner("localhost"), allowed)
    assert caught.value.exit_code == 2
    assert open_fds() == before
    assert recorder.calls == []
    return str(caught.value)


@pytest.fixture
def restricted(tmp_path):
    """A restricted directory holding secret.img, a safe one holding a link to it."""
    (tmp_path / "restricted").mkdir()
    (tmp_path / "restricted" / "secret.img").write_bytes(b"secret" * 100)
    (tmp_path / "safe").mkdir()
    (tmp_path / "safe" / "link.img").symlink_to(tmp_path / "restricted" / "secret.img")
    return tmp_path


def test_a_directory_is_refused(recorder, tmp_path):
    assert refusal(tmp_path, recorder) == f"cannot read image file {tmp_path}: Is a directory"


def test_a_fifo_is_refused_without_waiting_for_a_writer(recorder, tmp_path):
    fifo = tmp_path / "image.fifo"
    os.mkfifo(fifo)
    assert refusal(fifo, recorder) == f"cannot read image file {fifo}: not a regular file"


def test_a_device_is_refused(recorder):
    assert refusal("/dev/null", recorder) == "cannot read image file /dev/null: not a regular file"


def test_a_missing_file_is_refused(recorder, tmp_path):
    assert refusal(tmp_path / "nothing.img", recorder) == \
        f"cannot read image file {tmp_path / 'nothing.img'}: No such file or directory"


def test_the_file_opened_is_judged_on_its_real_path(recorder, restricted):
    link = restricted / "safe" / "link.img"
    assert refusal(link, recorder, judged_by(link, RESTRICTED_DIRS=str(restricted / "restricted"))) == \
        f"Not allowed to copy image file {link}"


def test_the_file_opened_is_allowed_when_safe_dirs_cover_it(recorder, restricted):
    link = restricted / "safe" / "link.img"
    allowed = judged_by(link, RESTRICTED_DIRS=str(restricted), SAFE_DIRS=str(restricted / "restricted"))
    with source.inspect(str(link), recorder.runner("localhost"), allowed) as image:
        assert (image.path, image.format, image.size) == (str(link), "raw", 600)


def test_allowed_is_given_the_real_path_before_anything_is_read(recorder, restricted):
    link, seen = restricted / "safe" / "link.img", []

    def allowed(real):
        seen.append(real)
        raise InvalidInput("refused")

    refusal(link, recorder, allowed)
    assert seen == [str(restricted / "restricted" / "secret.img")]


def test_data_is_read_through_the_descriptor_not_the_name(recorder, tmp_path):
    image, other = tmp_path / "image.img", tmp_path / "other.img"
    image.write_bytes(b"\x01" * (MIB + 3))
    other.write_bytes(b"\x02" * 10)
    local = recorder.runner("localhost")
    before = open_fds()

    def swap(real):  # between opening and reading: the name now points elsewhere
        (tmp_path / "swap").symlink_to(other)
        os.replace(tmp_path / "swap", image)

    with source.inspect(str(image), local, swap) as opened:
        assert opened.size == MIB + 3
        with source.raw_chunks(opened, local) as chunks:
            assert b"".join(chunks) == b"\x01" * (MIB + 3)
    assert open_fds() == before
    assert os.path.realpath(image) == str(other)


def test_qemu_tools_are_given_the_open_file_not_its_name(recorder, tmp_path):
    path = tmp_path / "disk.qcow2"
    path.write_bytes(source.QCOW2_MAGIC + bytes(60))
    recorder.answer("qemu-img", "info", out=json.dumps({"virtual-size": 3 * MIB}))
    recorder.answer("nbdcopy", out="raw data")
    local = recorder.runner("localhost")
    with source.inspect(str(path), local, anything) as image:
        opened = f"/proc/{os.getpid()}/fd/{image.fd}"
        assert os.readlink(opened) == str(path)
        path.unlink()  # the name is gone; the open file is still read
        with source.raw_chunks(image, local) as chunks:
            assert b"".join(chunks) == b"raw data"
    assert (image.format, image.size) == ("qcow2", 3 * MIB)
    assert recorder.argvs("localhost") == [["qemu-img", "info", "--output=json", "-f", "qcow2", opened],
                                           ["nbdcopy", "--", "[", "qemu-nbd", "-r", "-f", "qcow2", opened, "]", "-"]]


def test_a_qcow2_image_using_another_file_is_refused_and_closed(recorder, tmp_path):
    path = tmp_path / "disk.qcow2"
    path.write_bytes(source.QCOW2_MAGIC + bytes(60))
    recorder.answer("qemu-img", "info", out=json.dumps({"virtual-size": MIB, "backing-filename": "/etc/one/x"}))
    before = open_fds()
    with pytest.raises(InvalidInput, match=r"uses another file \(/etc/one/x\): not supported"):
        source.inspect(str(path), recorder.runner("localhost"), anything)
    assert open_fds() == before


def test_file_chunks_read_from_the_start_wherever_the_offset_is(tmp_path):
    path = tmp_path / "image.img"
    path.write_bytes(os.urandom(2 * MIB + 1))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, MIB, os.SEEK_SET)
        chunks = list(source.file_chunks(fd))
    finally:
        os.close(fd)
    assert [len(chunk) for chunk in chunks] == [MIB, MIB, 1]
    assert b"".join(chunks) == path.read_bytes()


def test_a_name_swapped_after_opening_does_not_change_the_judgment(recorder, restricted, monkeypatch):
    """The link points into the restricted directory when opened, at a harmless file when judged."""
    link, harmless = restricted / "safe" / "link.img", restricted / "safe" / "harmless.img"
    harmless.write_bytes(b"harmless")
    really_open = source._open

    def open_then_swap(path):
        fd = really_open(path)
        link.unlink()
        link.symlink_to(harmless)
        return fd

    monkeypatch.setattr(source, "_open", open_then_swap)
    assert refusal(link, recorder, judged_by(link, RESTRICTED_DIRS=str(restricted / "restricted"))) == \
        f"Not allowed to copy image file {link}"
    assert os.path.realpath(link) == str(harmless)
