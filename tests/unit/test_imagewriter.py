import os
import subprocess

import pytest

from oneiscsi import imagewriter, units

MIB = units.MIB


def decode(stream):
    """Parse a record stream (bytes and Spans, Spans of the image given) back
    into (kind, offset, length, data) tuples."""
    records, i = [], 0
    data = stream if isinstance(stream, bytes) else b"".join(stream)
    while i < len(data):
        end = data.index(b"\n", i)
        kind, offset, length = data[i:end].decode().split()
        i = end + 1
        payload = b""
        if kind == "D":
            payload = data[i:i + int(length)]
            i += int(length)
        records.append((kind, int(offset), int(length), payload))
    return records


def joined(stream, image: bytes) -> bytes:
    """The stream's bytes, its Spans read from image."""
    return b"".join(image[item.offset:item.offset + item.length] if isinstance(item, imagewriter.Span) else item
                    for item in stream)


def image_of(*parts):
    return b"".join(parts)


def chunks(image, size=MIB):
    return [image[i:i + size] for i in range(0, len(image), size)]


def stream_records(image, chunk=MIB, zero_device=True):
    return imagewriter.records(imagewriter.chunk_blocks(chunks(image, chunk)), len(image), zero_device)


def file_records(image, zero_device=True, window=imagewriter.FILE_WINDOW):
    """Records as a scan of an image file makes them: data as Spans."""
    blocks = [(offset, len(block), None if imagewriter.is_zero(block) else imagewriter.Span(offset, len(block)))
              for offset, block in zip(range(0, len(image), MIB), chunks(image))]
    return list(imagewriter.records(blocks, len(image), zero_device, window))


def rebuild(stream: bytes, image: bytes, device_size: int) -> bytes:
    """What the writer leaves on a device full of 0xff."""
    device = bytearray(b"\xff" * device_size)
    for kind, offset, length, data in decode(stream):
        if kind == "Z":
            device[offset:offset + length] = bytes(length)
        elif kind == "D":
            device[offset:offset + length] = data
        elif kind in "FS":
            device[offset:offset + length] = image[offset:offset + length]
        elif kind == "E" and length:
            device[offset:] = bytes(device_size - offset)
    return bytes(device)


@pytest.mark.parametrize("chunk", [MIB, 777777, 4096, 3 * MIB + 1])
def test_any_chunking_rebuilds_the_image_exactly(chunk):
    image = image_of(bytes(2 * MIB + 5), os.urandom(MIB + 17), bytes(MIB), os.urandom(100), bytes(3))
    stream = b"".join(stream_records(image, chunk))
    assert rebuild(stream, image, len(image) + MIB) == image + bytes(MIB)


def test_zero_runs_are_zeroed_in_place_and_never_travel():
    data = os.urandom(2 * MIB)
    image = image_of(bytes(3 * MIB), data, bytes(MIB), b"tail", bytes(5 * MIB), b"end")
    records = decode(b"".join(stream_records(image)))
    # 1 MiB blocks: the one holding "tail" is data; a 1 MiB gap travels as data, 4 MiB do not
    assert [(k, o, n) for k, o, n, _ in records] == [
        ("Z", 0, 3 * MIB), ("Z", 7 * MIB, 4 * MIB), ("D", 3 * MIB, 4 * MIB), ("D", 11 * MIB, 7),
        ("E", len(image), 1)]
    assert records[2][3] == image[3 * MIB:7 * MIB] and records[3][3] == image[11 * MIB:]


def test_a_window_of_many_zero_runs_is_zeroed_whole_first():
    image = b"".join(os.urandom(MIB) + bytes(imagewriter.MERGE_GAP) for _ in range(imagewriter.MAX_ZERO_RECORDS + 1))
    records = decode(joined(file_records(image), image))
    assert records[0][:3] == ("Z", 0, len(image))
    assert [k for k, *_ in records[1:]] == ["D"] * (imagewriter.MAX_ZERO_RECORDS + 1) + ["E"]
    assert rebuild(joined(file_records(image), image), image, len(image)) == image


def test_a_sparse_device_is_not_zeroed():
    image = image_of(bytes(MIB), b"x" * MIB, bytes(2 * MIB))
    records = decode(b"".join(stream_records(image, zero_device=False)))
    assert [(k, o, n) for k, o, n, _ in records] == [("D", MIB, MIB), ("E", 4 * MIB, 0)]


def test_stream_records_are_bounded():
    image = os.urandom(imagewriter.MAX_RECORD * 2 + 5)
    records = decode(b"".join(stream_records(image)))
    assert [n for k, _, n, _ in records if k == "D"] == [imagewriter.MAX_RECORD, imagewriter.MAX_RECORD, 5]
    assert b"".join(d for k, _, _, d in records) == image


def test_a_file_is_sent_as_one_span_per_run_of_data():
    image = image_of(os.urandom(3 * MIB), bytes(MIB), os.urandom(MIB + 3), bytes(8 * MIB), b"x")
    stream = file_records(image)
    assert [item for item in stream if isinstance(item, imagewriter.Span)] == [
        imagewriter.Span(0, 6 * MIB), imagewriter.Span(13 * MIB, 4)]  # the 1 MiB gap goes with the data
    assert sum(len(item) for item in stream if isinstance(item, bytes)) < 100  # headers only
    assert rebuild(joined(stream, image), image, len(image)) == image


def test_a_file_window_bounds_a_record():
    image = os.urandom(5 * MIB)
    spans = [item for item in file_records(image, window=2 * MIB) if isinstance(item, imagewriter.Span)]
    assert spans == [imagewriter.Span(0, 2 * MIB), imagewriter.Span(2 * MIB, 2 * MIB), imagewriter.Span(4 * MIB, MIB)]


def test_a_short_source_never_ends_the_stream():
    stream = imagewriter.records(imagewriter.chunk_blocks([b"x" * 10]), 20)
    with pytest.raises(imagewriter.ShortImage, match="gave 10 bytes, 20 were expected"):
        b"".join(stream)


def test_a_local_writer_reads_the_file_itself():
    assert imagewriter.local_records(123) == [b"F 0 123\n", b"E 123 1\n"]
    assert imagewriter.local_records(123, zero_device=False) == [b"S 0 123\n", b"E 123 0\n"]


def plain_tools():
    return [list(tool.argv) for tool in imagewriter.tools()]


def test_writer_gets_values_as_arguments():
    argv = list(imagewriter.writer("/dev/vg one/lv", [["sudo", *c] for c in plain_tools()], plain_tools(),
                                   "/proc/1/fd/3", ["tgtadm", "--tid", "1"]).argv)
    assert argv[:3] == ["sh", "-c", imagewriter.WRITER]
    assert argv[3:] == ["image-writer", "/dev/vg one/lv", "/proc/1/fd/3", "tgtadm --tid 1", "sudo dd",
                        "sudo blkdiscard -z", "sudo fallocate --punch-hole", "sudo blockdev", "dd", "blkdiscard -z",
                        "fallocate --punch-hole", "blockdev"]
    assert imagewriter.writer("/d", plain_tools(), plain_tools()).argv[4:7] == ("/d", "", "")


def write(device, stream, source="", check=()):
    """Run the real writer script on device with stream as its stdin."""
    done = subprocess.run(list(imagewriter.writer(str(device), plain_tools(), plain_tools(), str(source), check).argv),
                          input=stream, capture_output=True, timeout=60)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.mark.parametrize("zero_device", [True, False])
def test_the_writer_leaves_exactly_the_image_on_a_file(tmp_path, zero_device):
    image = image_of(os.urandom(MIB + 1), bytes(5 * MIB), os.urandom(100), bytes(2 * MIB + 7))
    device = tmp_path / "dev"
    if zero_device:
        device.write_bytes(b"\xa5" * (12 * MIB))  # stale data everywhere, and past the image's end
    else:
        with open(device, "wb") as new:  # a new sparse file
            new.truncate(12 * MIB)
    rc, out, err = write(device, b"".join(stream_records(image, zero_device=zero_device)))
    assert (rc, out, err) == (0, f"ready\nwrote {len(image)} bytes\n", "")
    assert device.read_bytes() == image + bytes(12 * MIB - len(image))


@pytest.mark.parametrize("zero_device", [True, False])
def test_the_writer_reading_the_file_itself(tmp_path, zero_device):
    image = image_of(os.urandom(3000), bytes(3 * MIB), b"end")
    (tmp_path / "image").write_bytes(image)
    device = tmp_path / "dev"
    device.write_bytes((b"\xa5" if zero_device else b"\0") * (4 * MIB))
    rc, out, _ = write(device, b"".join(imagewriter.local_records(len(image), zero_device)), tmp_path / "image")
    assert (rc, out) == (0, f"ready\nwrote {len(image)} bytes\n")
    assert device.read_bytes() == image + bytes(4 * MIB - len(image))


def test_the_writer_runs_the_check_after_the_flush(tmp_path):
    device = tmp_path / "dev"
    device.write_bytes(bytes(MIB))
    stream = b"".join(stream_records(b"x" * 10))
    assert write(device, stream, check=["true"])[0] == 0
    assert write(device, stream, check=["false"])[:2] == (imagewriter.CHECK_FAILED_RC, "ready\n")


@pytest.mark.parametrize("stream, rc, message", [
    (b"D 0 10\nshort", 3, "image writer: the stream ended early"),
    (b"X 0 0\n", 2, "image writer: bad record"),
    (b"Z 0 $(touch${IFS}pwned)\n", 2, "image writer: bad record"),
    (b"D 1e3 4\nabcd", 2, "image writer: bad record"),
])
def test_the_writer_refuses_a_broken_stream_and_runs_nothing_of_it(tmp_path, stream, rc, message):
    device = tmp_path / "dev"
    device.write_bytes(bytes(100))
    result = write(device, stream)
    assert result[0] == rc and result[2].strip() == message
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")


def test_the_writer_never_creates_the_device(tmp_path):
    rc, _, _ = write(tmp_path / "gone", b"".join(stream_records(b"x" * 10)))
    assert rc == 1 and not (tmp_path / "gone").exists()


# the volume copier: one volume into another on the target server

def plain_copier_tools():
    return plain_tools()


def test_the_tools_are_all_privileged():
    tools = imagewriter.tools()
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
