import os
import subprocess

import pytest

from oneiscsi import imagewriter, units

MIB = units.MIB


def decode(stream: bytes):
    """Parse a record stream back into (kind, offset, length, data) tuples."""
    records, i = [], 0
    while i < len(stream):
        end = stream.index(b"\n", i)
        kind, offset, length = stream[i:end].decode().split()
        i = end + 1
        data = b""
        if kind == "D":
            data = stream[i:i + int(length)]
            i += int(length)
        records.append((kind, int(offset), int(length), data))
    return records


def image_of(*parts):
    return b"".join(parts)


def blocks(image, size=MIB):
    return [image[i:i + size] for i in range(0, len(image), size)]


def rebuild(stream: bytes, size: int) -> bytes:
    """What the writer leaves on a device full of 0xff."""
    device = bytearray(b"\xff" * size)
    for kind, offset, length, data in decode(stream):
        if kind == "W":
            device[:] = bytes(size)
        elif kind == "D":
            device[offset:offset + length] = data
    return bytes(device)


@pytest.mark.parametrize("chunk", [MIB, 777777, 4096, 3 * MIB + 1])
def test_any_chunking_rebuilds_the_image_exactly(chunk):
    image = image_of(bytes(2 * MIB + 5), os.urandom(MIB + 17), bytes(MIB), os.urandom(100), bytes(3))
    assert rebuild(b"".join(imagewriter.records(blocks(image, chunk), len(image))), len(image)) == image


def test_the_device_is_zeroed_first_and_zero_runs_never_travel():
    data = os.urandom(2 * MIB)
    image = image_of(bytes(3 * MIB), data, bytes(MIB), b"tail", bytes(5 * MIB), b"end")
    records = decode(b"".join(imagewriter.records(blocks(image), len(image))))
    # 1 MiB blocks: the one holding "tail" is data; a 1 MiB gap travels as data, 4 MiB do not
    assert [(k, o, n) for k, o, n, _ in records] == [
        ("W", 0, 0), ("D", 3 * MIB, 4 * MIB), ("D", 11 * MIB, 7), ("E", len(image), 0)]
    assert records[1][3] == image[3 * MIB:7 * MIB] and records[2][3] == image[11 * MIB:]


def test_a_sparse_device_is_not_zeroed():
    image = image_of(bytes(MIB), b"x" * MIB, bytes(2 * MIB))
    records = decode(b"".join(imagewriter.records(blocks(image), len(image), zero_device=False)))
    assert [(k, o, n) for k, o, n, _ in records] == [("D", MIB, MIB), ("E", 4 * MIB, 0)]


def test_data_records_are_bounded():
    image = os.urandom(imagewriter.MAX_RECORD * 2 + 5)
    records = decode(b"".join(imagewriter.records(blocks(image), len(image))))
    assert [n for k, _, n, _ in records if k == "D"] == [imagewriter.MAX_RECORD, imagewriter.MAX_RECORD, 5]
    assert b"".join(d for k, _, _, d in records) == image


def test_a_short_source_never_ends_the_stream():
    stream = imagewriter.records([b"x" * 10], 20)
    with pytest.raises(imagewriter.ShortImage, match="gave 10 bytes, 20 were expected"):
        b"".join(stream)


def test_writer_gets_values_as_arguments():
    plain = [list(tool.argv) for tool in imagewriter.tools()]
    argv = list(imagewriter.writer("/dev/vg one/lv", [["sudo", *c] for c in plain], plain).argv)
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == ["image-writer", "/dev/vg one/lv", "sudo dd", "sudo blkdiscard -z",
                        "sudo fallocate --punch-hole", "dd", "blkdiscard -z", "fallocate --punch-hole"]


# the volume copier: one volume into another on the target server

def plain_copier_tools():
    return [list(tool.argv) for tool in imagewriter.copier_tools()]


def test_copier_tools_are_the_writers_and_blockdev_all_privileged():
    tools = imagewriter.copier_tools()
    assert [list(tool.argv) for tool in tools] == [["dd"], ["blkdiscard", "-z"], ["fallocate", "--punch-hole"],
                                                   ["blockdev"]]
    assert all(tool.privileged for tool in tools)


def test_copier_gets_values_as_arguments():
    argv = list(imagewriter.copier("/dev/vg one/lv-one-7", "/dev/vg-one/lv;x", [["sudo", *tool] for tool in
                                                                              plain_copier_tools()], True).argv)
    assert argv[:3] == ["sh", "-c", imagewriter.COPIER]
    assert argv[3:] == ["volume-copy", "/dev/vg one/lv-one-7", "/dev/vg-one/lv;x", "sudo dd", "sudo blkdiscard -z",
                        "sudo fallocate --punch-hole", "sudo blockdev", "1"]
    assert imagewriter.copier("/a", "/b", plain_copier_tools(), False).argv[-1] == "0"


def copy(source, device, zero_device):
    done = subprocess.run(list(imagewriter.copier(str(source), str(device), plain_copier_tools(), zero_device).argv),
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def test_the_copier_zeroes_the_device_then_copies_the_data(tmp_path):
    data = os.urandom(1000) + bytes(300 * 1024) + b"end"
    (tmp_path / "src").write_bytes(data)
    (tmp_path / "dev").write_bytes(b"\xff" * (2 * MIB))  # stale data of an older volume
    rc, _, err = copy(tmp_path / "src", tmp_path / "dev", zero_device=True)
    assert (rc, err) == (0, "")
    assert (tmp_path / "dev").read_bytes() == data + bytes(2 * MIB - len(data))


def test_the_copier_onto_a_new_sparse_file_copies_only(tmp_path):
    data = os.urandom(MIB + 7)
    (tmp_path / "src").write_bytes(data)
    with open(tmp_path / "dev", "wb") as new:
        new.truncate(2 * MIB)
    assert copy(tmp_path / "src", tmp_path / "dev", zero_device=False) == (0, f"copied {MIB + 7} bytes\n", "")
    assert (tmp_path / "dev").read_bytes() == data + bytes(MIB - 7)


def test_the_copier_refuses_a_source_larger_than_the_device_and_writes_nothing(tmp_path):
    (tmp_path / "src").write_bytes(b"\x01" * (MIB + 1))
    (tmp_path / "dev").write_bytes(b"\xff" * MIB)
    rc, out, err = copy(tmp_path / "src", tmp_path / "dev", zero_device=True)
    assert (rc, out) == (4, "")
    assert err == f"volume copy: {tmp_path / 'src'} ({MIB + 1} bytes) does not fit in {tmp_path / 'dev'} ({MIB} bytes)\n"
    assert (tmp_path / "dev").read_bytes() == b"\xff" * MIB


def test_the_copier_fails_on_a_missing_source(tmp_path):
    (tmp_path / "dev").write_bytes(b"\xff" * 10)
    rc, out, err = copy(tmp_path / "nothing", tmp_path / "dev", zero_device=True)
    assert rc == 1 and out == "" and "No such file" in err
    assert (tmp_path / "dev").read_bytes() == b"\xff" * 10
