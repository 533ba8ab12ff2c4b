import os

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
