"""Writing an image onto a device on the target server, zero-aware.

The image goes as a stream of records to a small fixed script on the target
server, which writes each record:

    W 0 0\\n                             first: zero the whole device in place
                                          (blkdiscard -z; for a file, punch a
                                          hole over it, else dd from /dev/zero)
    D <offset> <length>\\n<length bytes>   data, written at offset with dd
    E <size> 0\\n                          end: flush the device to disk

Blocks of zeros are never sent: a fresh sparse file reads as zeros already
(no W record), any other device is zeroed whole on the server, so no stale
data survives under the image, nor past its end. The stream's bytes are only
ever data to dd (the script reads record headers with `read`, never executes
them); a stream that ends without its E record fails. dd never creates the
device: a volume removed under the writer (an rm, a rollback) stays removed.
Pure: no I/O here.
"""
import shlex
from typing import Iterable, Iterator, Sequence

from .command import Command, command
from .errors import NotFound, OneIscsiError
from .units import MIB

BLOCK = MIB                # zero detection granularity
MAX_RECORD = 16 * MIB      # data buffered before it is sent (bounds memory)
MERGE_GAP = 4 * MIB        # shorter zero runs between data are sent as data
_ZEROS = bytes(BLOCK)

# Zeroes the device $dev in place with the commands $zero_block, $zero_file, $dd.
ZERO_DEVICE = r'''
zero_device() {
  if [ -b "$dev" ]; then eval "$zero_block"' "$dev"'
  else size=$(stat -c %s "$dev") || return 1
    eval "$zero_file"' -o 0 -l "$size" "$dev"' 2>/dev/null ||
    eval "$dd"' if=/dev/zero of="$dev" bs=4M count="$size" iflag=count_bytes conv=notrunc,nocreat status=none'
  fi
}
'''
# Arguments: the device, then command lines made by shlex.join: dd, zeroing a
# block device, punching a hole in a file; then the same three without the
# sudo prefix, used when the device is writable anyway (sudo costs a process
# per record). The records' numbers are only expanded inside double quotes.
WRITER = ZERO_DEVICE + r'''
dev=$1 dd=$2 zero_block=$3 zero_file=$4
if [ -w "$dev" ]; then dd=$5 zero_block=$6 zero_file=$7; fi
while read -r kind offset length; do
  case $kind in
    W) zero_device || exit 1 ;;
    D) eval "$dd"' of="$dev" bs=4M seek="$offset" count="$length" iflag=count_bytes,fullblock \
         oflag=seek_bytes conv=notrunc,nocreat status=none' || exit 1 ;;
    E) eval "$dd"' of="$dev" count=0 conv=notrunc,nocreat,fsync status=none' || exit 1
       echo "wrote $offset bytes"; exit 0 ;;
    *) echo "image writer: bad record" >&2; exit 2 ;;
  esac
done
echo "image writer: the stream ended early" >&2; exit 3
'''


# The size in bytes of the block device or file $1, with the command $blockdev.
SIZE_OF = r'''
size_of() { if [ -b "$1" ]; then eval "$blockdev"' --getsize64 "$1"'; else stat -L -c %s "$1"; fi; }
'''


# Copies one volume into another on the target server, zero-aware: the
# destination is zeroed first (unless it is a new sparse file, $6 = 0), then
# dd skips the zero blocks of the source (conv=sparse). Arguments: source,
# destination, then dd, zeroing a block device, punching a hole in a file and
# blockdev as command lines made by shlex.join, then 1 or 0.
COPIER = ZERO_DEVICE + SIZE_OF + r'''
src=$1 dev=$2 dd=$3 zero_block=$4 zero_file=$5 blockdev=$6 zero=$7
bytes=$(size_of "$src") && room=$(size_of "$dev") || exit 1
if [ "$bytes" -gt "$room" ]; then
  echo "volume copy: $src ($bytes bytes) does not fit in $dev ($room bytes)" >&2; exit 4
fi
if [ "$zero" = 1 ]; then zero_device || exit 1; fi
eval "$dd"' if="$src" of="$dev" bs=4M count="$bytes" iflag=count_bytes,fullblock \
  conv=sparse,notrunc,nocreat,fsync status=none' || exit 1
echo "copied $bytes bytes"
'''


class ShortImage(OneIscsiError):
    """The source gave fewer or more bytes than it announced."""


def writer(device: str, privileged: Sequence[Sequence[str]], plain: Sequence[Sequence[str]]) -> Command:
    """The writer script, given tools() as they run on the host: with their
    sudo prefix (privileged) and without (plain)."""
    return command("sh", "-c", WRITER, "image-writer", device, *map(shlex.join, privileged),
                   *map(shlex.join, plain))


def copier(source: str, device: str, privileged: Sequence[Sequence[str]], zero_device: bool) -> Command:
    """The volume copier, given copier_tools() as they run on the host."""
    return command("sh", "-c", COPIER, "volume-copy", source, device, *map(shlex.join, privileged),
                   "1" if zero_device else "0")


def device_size(device: str, blockdev: Sequence[str]) -> Command:
    """Prints the size in bytes of a block device or file, given blockdev as
    it runs on the host; NotFound when there is neither."""
    return command("sh", "-c", SIZE_OF + 'blockdev=$2; size_of "$1"', "device-size", device, shlex.join(blockdev),
                   query=True, explain=lambda err: NotFound(f"no device or file {device} on {err.host}")
                   if "No such file" in err.stderr else None)


def copier_tools() -> list[Command]:
    return [*tools(), command("blockdev", privileged=True)]


def tools() -> list[Command]:
    """The writer's commands, in its order: dd, zeroing a block device,
    punching a hole in a file."""
    return [command("dd", privileged=True), command("blkdiscard", "-z", privileged=True),
            command("fallocate", "--punch-hole", privileged=True)]


def records(chunks: Iterable[bytes], size: int, zero_device: bool = True) -> Iterator[bytes]:
    """The record stream for an image of size bytes given in chunks of at
    most BLOCK bytes. zero_device False: the device is known to read as zeros
    (a new sparse file). Zero runs shorter than MERGE_GAP between data travel
    as data: a record costs a process on the target server."""
    if zero_device:
        yield b"W 0 0\n"
    offset = 0
    pending: list[bytes] = []  # data not yet sent, ending at offset - zeros
    pending_size = 0
    zeros = 0                  # zero bytes since the last data, ending at offset
    for block in chunks:
        if _is_zero(block):
            zeros += len(block)
        else:
            if zeros and pending and zeros < MERGE_GAP:
                pending += _zero_filler(zeros)
                pending_size += zeros
            elif zeros and pending:
                yield from _data(offset - zeros - pending_size, pending, pending_size)
                pending, pending_size = [], 0
            zeros = 0
            pending.append(block)
            pending_size += len(block)
            if pending_size >= MAX_RECORD:
                yield from _data(offset + len(block) - pending_size, pending, pending_size)
                pending, pending_size = [], 0
        offset += len(block)
    if offset != size:
        raise ShortImage(f"the image gave {offset} bytes, {size} were expected")
    if pending:
        yield from _data(offset - zeros - pending_size, pending, pending_size)
    yield f"E {offset} 0\n".encode()


def _zero_filler(length: int) -> list[bytes]:
    """length zero bytes as slices of one shared block: no memory to speak of."""
    return [_ZEROS] * (length // BLOCK) + ([_ZEROS[:length % BLOCK]] if length % BLOCK else [])


def _is_zero(block: bytes) -> bool:
    # most data blocks give themselves away by their first or last byte
    return not block[0] and not block[-1] and block == _ZEROS[:len(block)]


def _data(offset: int, blocks: list[bytes], size: int) -> Iterator[bytes]:
    yield f"D {offset} {size}\n".encode()
    yield from blocks


