"""Writing an image onto a device on the target server, zero-aware.

The image goes as a stream of records to a small fixed script on the target
server, which writes each record with dd:

    D <offset> <length>\\n<length bytes>   data, written at offset
    Z <offset> <length>\\n                 zeros, written there from /dev/zero
    E <size>\\n                            end: flush the device to disk

Blocks of zeros are never sent: on a fresh sparse file they are skipped
altogether, elsewhere the target server writes them itself, so no stale data
survives under the image. The stream's bytes are only ever data to dd (the
script reads record headers with `read`, never executes them); a stream that
ends without its E record fails. Pure: no I/O here.
"""
from __future__ import annotations

from typing import Iterable, Iterator

MIB = 1024 * 1024
BLOCK = MIB                # zero detection granularity
MAX_RECORD = 16 * MIB      # data buffered before it is sent (bounds memory)
_ZEROS = bytes(BLOCK)

# Arguments: the device, then the dd command (with its sudo prefix).
WRITER = r'''
dev=$1; shift
while read -r kind offset length; do
  case $kind in
    D) "$@" of="$dev" bs=4M seek="$offset" count="$length" iflag=count_bytes,fullblock \
         oflag=seek_bytes conv=notrunc status=none || exit 1 ;;
    Z) "$@" if=/dev/zero of="$dev" bs=4M seek="$offset" count="$length" iflag=count_bytes \
         oflag=seek_bytes conv=notrunc status=none || exit 1 ;;
    E) "$@" of="$dev" count=0 conv=notrunc,fsync status=none || exit 1
       echo "wrote $offset bytes"; exit 0 ;;
    *) echo "image writer: bad record" >&2; exit 2 ;;
  esac
done
echo "image writer: the stream ended early" >&2; exit 3
'''


class ShortImage(Exception):
    """The source gave fewer or more bytes than it announced."""


def writer_command(device: str, dd: list[str]) -> list[str]:
    """argv of the writer script; dd is the resolved dd command line."""
    return ["sh", "-c", WRITER, "image-writer", device, *dd]


def records(chunks: Iterable[bytes], size: int, zero_holes: bool = True) -> Iterator[bytes]:
    """The record stream for an image of size bytes given in chunks. With
    zero_holes False, zero blocks are skipped: only for a device known to read
    as zeros (a new sparse file)."""
    offset = 0
    pending = bytearray()   # data not yet sent, starting at offset - len(pending)
    zeros = 0               # zero bytes not yet sent, just before offset
    for block in _blocks(chunks):
        if block == _ZEROS[:len(block)]:
            if pending:
                yield from _data(offset - len(pending), pending)
            zeros += len(block)
        else:
            if zeros:
                yield from _zero(offset - zeros, zeros, zero_holes)
                zeros = 0
            pending += block
            if len(pending) >= MAX_RECORD:
                yield from _data(offset + len(block) - len(pending), pending)
        offset += len(block)
    if pending:
        yield from _data(offset - len(pending), pending)
    if zeros:
        yield from _zero(offset - zeros, zeros, zero_holes)
    if offset != size:
        raise ShortImage(f"the image gave {offset} bytes, {size} were expected")
    yield f"E {offset} 0\n".encode()


def _data(offset: int, pending: bytearray) -> Iterator[bytes]:
    yield f"D {offset} {len(pending)}\n".encode()
    yield bytes(pending)
    pending.clear()


def _zero(offset: int, length: int, zero_holes: bool) -> Iterator[bytes]:
    if zero_holes:
        yield f"Z {offset} {length}\n".encode()


def _blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The stream cut in BLOCK-sized pieces (the last may be shorter)."""
    rest = b""
    for chunk in chunks:
        data = rest + chunk if rest else chunk
        whole = len(data) - len(data) % BLOCK
        for start in range(0, whole, BLOCK):
            yield data[start:start + BLOCK]
        rest = data[whole:]
    if rest:
        yield rest
