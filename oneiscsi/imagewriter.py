"""Writing an image onto a device on the target server, zero-aware.

The image goes as a stream of records to a small fixed script on the target
server (the writer), which writes each record:

    Z <offset> <length>\\n                zero a range in place (a block device:
                                          blkdiscard -z; a file: punch a hole,
                                          else dd from /dev/zero)
    D <offset> <length>\\n<length bytes>  data from the stream, written with dd
    F <offset> <length>\\n                data dd reads from the image file
    S <offset> <length>\\n                the same, zero blocks skipped (the
                                          device reads as zeros there already)
    E <size> <tail>\\n                    the end: with tail 1, zero from size
                                          to the device's end; flush the device

F and S serve a writer on this machine, which reads the image file itself.
Zero runs never travel: each is zeroed in place (a window of many runs is
zeroed whole first, then its data written); a fresh sparse file reads as
zeros already and is not zeroed at all. So no stale data survives under the
image, nor past its end. The writer says `ready` before it reads a record;
the stream's bytes are only ever data to dd (headers are read with `read`,
their numbers checked to be digits, never executed); a stream that ends
without its E record fails. After the flush the writer runs the check it is
given (exit status CHECK_FAILED_RC if that fails). dd never creates the
device: a volume removed under the writer (an rm, a rollback) stays removed.
Pure: no I/O here.
"""
import shlex
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence, Union

from .command import Command, command
from .errors import NotFound, OneIscsiError
from .units import MIB

BLOCK = MIB                 # zero detection granularity
MAX_RECORD = 16 * MIB       # data of a stream held before it is sent (bounds memory)
FILE_WINDOW = 256 * MIB     # of an image file, planned at once (nothing held: it is read again to send)
MERGE_GAP = 4 * MIB         # shorter zero runs between data are sent as data
MAX_ZERO_RECORDS = 8        # a window with more zero runs is zeroed whole first
CHECK_FAILED_RC = 5         # the writer's exit status when the check after the flush fails
_ZEROS = bytes(BLOCK)


@dataclass(frozen=True)
class Span:
    """Bytes of the image file, sent as they are (their record says where)."""
    offset: int
    length: int


Data = Union[bytes, Span]
Block = tuple[int, int, Optional[Data]]  # offset, length, the data (None: all zeros)

# The size in bytes of the block device or file $1, with the command $blockdev.
SIZE_OF = r'''
size_of() { if [ -b "$1" ]; then eval "$blockdev"' --getsize64 "$1"'; else stat -L -c %s "$1"; fi; }
'''
# Zeroes $2 bytes of $dev from offset $1; on a block device blkdiscard -z
# takes the 4 KiB-aligned middle, dd the edges (and the middle, where
# blkdiscard cannot: an older one without -f, a device it may not open).
ZERO_RANGE = r'''
zero_dd() {
  [ "$2" -gt 0 ] || return 0
  eval "$dd"' if=/dev/zero of="$dev" bs=4M seek="$1" count="$2" iflag=count_bytes oflag=seek_bytes \
    conv=notrunc,nocreat status=none'
}
zero_range() {
  [ "$2" -gt 0 ] || return 0
  if [ -b "$dev" ]; then
    head=$(( (4096 - $1 % 4096) % 4096 )); [ "$head" -gt "$2" ] && head=$2
    from=$(( $1 + head )); body=$(( ($2 - head) / 4096 * 4096 ))
    zero_dd "$1" "$head" || return 1
    if [ "$body" -gt 0 ]; then
      eval "$zero_block"' -o "$from" -l "$body" "$dev"' 2>/dev/null || zero_dd "$from" "$body" || return 1
    fi
    zero_dd $(( from + body )) $(( $2 - head - body ))
  else
    eval "$zero_file"' -o "$1" -l "$2" "$dev"' 2>/dev/null || zero_dd "$1" "$2"
  fi
}
'''
# Arguments: the device, the image file (of F and S records), the check after
# the flush (a command line, or empty), then command lines made by
# shlex.join: dd, zeroing a block device, punching a hole in a file,
# blockdev; then the same four without the sudo prefix, used when the device
# is writable anyway (sudo costs a process per record).
WRITER = SIZE_OF + ZERO_RANGE + r'''
dev=$1 src=$2 check=$3 dd=$4 zero_block=$5 zero_file=$6 blockdev=$7
if [ -w "$dev" ]; then dd=$8 zero_block=$9 zero_file=${10} blockdev=${11}; fi
echo ready
while read -r kind offset length; do
  case $offset$length in ""|*[!0-9]*) echo "image writer: bad record" >&2; exit 2 ;; esac
  case $kind in
    Z) zero_range "$offset" "$length" || exit 1 ;;
    D) eval "$dd"' of="$dev" bs=4M seek="$offset" count="$length" iflag=count_bytes,fullblock \
         oflag=seek_bytes conv=notrunc,nocreat status=none' || exit 1 ;;
    F|S) sparse=; if [ "$kind" = S ]; then sparse=sparse,; fi
       eval "$dd"' if="$src" of="$dev" bs=4M skip="$offset" seek="$offset" count="$length" \
         iflag=skip_bytes,count_bytes,fullblock oflag=seek_bytes conv=${sparse}notrunc,nocreat status=none' || exit 1
       if [ "$(size_of "$src")" -lt $(( offset + length )) ]; then
         echo "image writer: the image file ended early" >&2; exit 3
       fi ;;
    E) if [ "$length" = 1 ]; then
         end=$(size_of "$dev") || exit 1
         zero_range "$offset" $(( end - offset )) || exit 1
       fi
       eval "$dd"' of="$dev" count=0 conv=notrunc,nocreat,fsync status=none' || exit 1
       if [ -n "$check" ]; then eval "$check" >/dev/null || exit 5; fi
       echo "wrote $offset bytes"; exit 0 ;;
    *) echo "image writer: bad record" >&2; exit 2 ;;
  esac
done
echo "image writer: the stream ended early" >&2; exit 3
'''


# Copies one volume into another on the target server, zero-aware: the
# destination is zeroed first (unless it is a new sparse file, $6 = 0), then
# dd skips the zero blocks of the source (conv=sparse). Arguments: source,
# destination, then dd, zeroing a block device, punching a hole in a file and
# blockdev as command lines made by shlex.join, then 1 or 0.
COPIER = SIZE_OF + ZERO_RANGE + r'''
src=$1 dev=$2 dd=$3 zero_block=$4 zero_file=$5 blockdev=$6 zero=$7
bytes=$(size_of "$src") && room=$(size_of "$dev") || exit 1
if [ "$bytes" -gt "$room" ]; then
  echo "volume copy: $src ($bytes bytes) does not fit in $dev ($room bytes)" >&2; exit 4
fi
if [ "$zero" = 1 ]; then zero_range 0 "$room" || exit 1; fi
# what the page cache holds of a block device may be stale: LIO writes around it
if [ -b "$src" ]; then eval "$blockdev"' --flushbufs "$src"' || exit 1; fi
eval "$dd"' if="$src" of="$dev" bs=4M count="$bytes" iflag=count_bytes,fullblock \
  conv=sparse,notrunc,nocreat,fsync status=none' || exit 1
echo "copied $bytes bytes"
'''


class ShortImage(OneIscsiError):
    """The source gave fewer or more bytes than it announced."""


def writer(device: str, privileged: Sequence[Sequence[str]], plain: Sequence[Sequence[str]],
           source: str = "", check: Sequence[str] = ()) -> Command:
    """The writer script, given tools() as they run on the host: with their
    sudo prefix (privileged) and without (plain). source: the image file, for
    a writer that reads it itself; check: a command (as it runs on the host)
    that must succeed after the flush."""
    return command("sh", "-c", WRITER, "image-writer", device, source, shlex.join(check) if check else "",
                   *map(shlex.join, privileged), *map(shlex.join, plain))


def copier(source: str, device: str, privileged: Sequence[Sequence[str]], zero_device: bool) -> Command:
    """The volume copier, given tools() as they run on the host."""
    return command("sh", "-c", COPIER, "volume-copy", source, device, *map(shlex.join, privileged),
                   "1" if zero_device else "0")


def device_size(device: str, blockdev: Sequence[str]) -> Command:
    """Prints the size in bytes of a block device or file, given blockdev as
    it runs on the host; NotFound when there is neither."""
    return command("sh", "-c", SIZE_OF + 'blockdev=$2; size_of "$1"', "device-size", device, shlex.join(blockdev),
                   query=True, explain=lambda err: NotFound(f"no device or file {device} on {err.host}")
                   if "No such file" in err.stderr else None)


def tools(shared_device: bool = False) -> list[Command]:
    """The writer's and the copier's commands, in their order: dd, zeroing a
    block device, punching a hole in a file, blockdev. shared_device: the
    device is held by the kernel's target (LIO), which blkdiscard's
    exclusive open (util-linux 2.36 and later) would refuse without -f."""
    zero = ("blkdiscard", "-f", "-z") if shared_device else ("blkdiscard", "-z")
    return [command("dd", privileged=True), command(*zero, privileged=True),
            command("fallocate", "--punch-hole", privileged=True), command("blockdev", privileged=True)]


def records(blocks: Iterable[Block], size: int, zero_device: bool = True,
            window: int = MAX_RECORD) -> Iterator[Data]:
    """The record stream of an image of size bytes given as consecutive
    blocks of at most BLOCK bytes, planned a window of bytes at a time (the
    data of a window is held: bytes or Spans). zero_device False: the device
    reads as zeros already (a new sparse file). Zero runs shorter than
    MERGE_GAP between data travel as data: a record costs a process on the
    target server."""
    offset, planned = 0, []
    for block in blocks:
        planned.append(block)
        offset += block[1]
        if offset - planned[0][0] >= window:
            yield from _window(planned, zero_device)
            planned = []
    if offset != size:
        raise ShortImage(f"the image gave {offset} bytes, {size} were expected")
    if planned:
        yield from _window(planned, zero_device)
    yield f"E {offset} {int(zero_device)}\n".encode()


def local_records(size: int, zero_device: bool = True) -> list[bytes]:
    """The record stream of a writer reading the image file itself: dd
    copies it whole, skipping the zero blocks where the device reads as
    zeros already."""
    return [f"{'F' if zero_device else 'S'} 0 {size}\n".encode(), f"E {size} {int(zero_device)}\n".encode()]


def _window(blocks: list[Block], zero_device: bool) -> Iterator[Data]:
    runs = _runs(blocks)
    zero_runs = [run for run in runs if run[2] is None]
    if zero_device and len(zero_runs) > MAX_ZERO_RECORDS:
        start, end = blocks[0][0], blocks[-1][0] + blocks[-1][1]
        yield f"Z {start} {end - start}\n".encode()
    elif zero_device:
        yield from (f"Z {start} {length}\n".encode() for start, length, _ in zero_runs)
    for start, length, data in runs:
        if data is not None:
            yield f"D {start} {length}\n".encode()
            yield from data


def _runs(blocks: list[Block]) -> list[tuple[int, int, Optional[list[Data]]]]:
    """Consecutive blocks joined into runs of data (a list of bytes or one
    Span) and of zeros (None); zeros shorter than MERGE_GAP between data
    become data."""
    runs: list = []
    for offset, length, data in blocks:
        if runs and (runs[-1][2] is None) == (data is None):
            runs[-1][1] += length
            if data is not None:
                _append(runs[-1][2], data)
        else:
            runs.append([offset, length, None if data is None else [data]])
    for i in range(len(runs) - 2, 0, -1):  # from the end: joining shifts only what follows
        start, length, data = runs[i]
        if data is None and length < MERGE_GAP:
            before, after = runs[i - 1], runs.pop(i + 1)
            _append(before[2], Span(start, length) if isinstance(before[2][-1], Span) else _zero_filler(length))
            for piece in after[2]:
                _append(before[2], piece)
            before[1] += length + after[1]
            runs.pop(i)
    return [tuple(run) for run in runs]


def _append(pieces: list, data) -> None:
    """Add data (bytes, a Span or a list of bytes) to pieces; adjacent Spans become one."""
    for piece in data if isinstance(data, list) else [data]:
        if isinstance(piece, Span) and pieces and isinstance(pieces[-1], Span):
            pieces[-1] = Span(pieces[-1].offset, pieces[-1].length + piece.length)
        else:
            pieces.append(piece)


def _zero_filler(length: int) -> list[bytes]:
    """length zero bytes as slices of one shared block: no memory to speak of."""
    return [_ZEROS] * (length // BLOCK) + ([_ZEROS[:length % BLOCK]] if length % BLOCK else [])


def is_zero(block) -> bool:
    """block (bytes or bytearray) holds only zeros."""
    # most data blocks give themselves away by their first or last byte
    return not block[0] and not block[-1] and block == _ZEROS[:len(block)]


def chunk_blocks(chunks: Iterable[bytes]) -> Iterator[Block]:
    """Blocks of a stream of chunks (each at most BLOCK bytes), the zero ones without their data."""
    offset = 0
    for chunk in chunks:
        yield offset, len(chunk), None if is_zero(chunk) else chunk
        offset += len(chunk)
