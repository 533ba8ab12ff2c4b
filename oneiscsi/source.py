"""The image to copy: a local file (raw or qcow2) or an http(s) URL, read as a
stream of raw bytes, never held whole in memory or copied to a temporary file.
A local file is opened once: what is judged is what is read."""
from __future__ import annotations

import errno
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Optional, TypeVar

from . import imagewriter
from .command import command
from .errors import InvalidInput, OneIscsiError
from .run import Runner
from .units import whole_mib

CHUNK = imagewriter.BLOCK  # the zero-detection block
READ_AHEAD = 512  # blocks of an image file scanned ahead of the copy
T = TypeVar("T")
QCOW2_MAGIC = b"QFI\xfb"


@dataclass(frozen=True)
class Image:
    """An image to copy; a local file is held open as fd, everything is read
    through it, and `with image:` closes it."""
    path: str    # as given
    format: str  # "raw" or "qcow2"
    size: int    # bytes of raw data
    fd: Optional[int] = None  # the local file, opened once; None for a URL
    data_format: str = "raw"  # what the copy holds: raw, or a qcow2 file kept as it is
    room: int = 0  # bytes the volume needs beyond size: a qcow2 file kept grows up to its full allocation

    def __enter__(self) -> Image:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.fd is not None:
            os.close(self.fd)

    @property
    def is_url(self) -> bool:
        return is_url(self.path)

    @property
    def size_mb(self) -> int:
        """Whole MiB of the volume it needs, rounded up."""
        return whole_mib(max(self.size, self.room))


def is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def inspect(path: str, local: Runner, allowed: Callable[[str], None], keep_qcow2: bool = False) -> Image:
    """The image at path. A local file is opened once, then judged by
    allowed(the real path of the file opened), which raises to refuse it,
    before anything is read. keep_qcow2: a qcow2 file is read as it is."""
    if is_url(path):
        return Image(path, "raw", _url_size(path, local.cfg.timeout))
    fd = _open(path)
    try:
        allowed(os.readlink(f"/proc/self/fd/{fd}"))
        return _inspect_file(path, fd, local, keep_qcow2)
    except BaseException:
        os.close(fd)
        raise


def _open(path: str) -> int:
    """O_NONBLOCK: opening a FIFO must not wait for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as err:
        raise InvalidInput(f"cannot read image file {path}: {err.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        reason = os.strerror(errno.EISDIR) if stat.S_ISDIR(mode) else "not a regular file"
        raise InvalidInput(f"cannot read image file {path}: {reason}")
    os.set_blocking(fd, True)
    return fd


def _inspect_file(path: str, fd: int, local: Runner, keep_qcow2: bool) -> Image:
    if os.pread(fd, len(QCOW2_MAGIC), 0) != QCOW2_MAGIC:
        return Image(path, "raw", os.fstat(fd).st_size, fd)
    import json  # only for qcow2 images: not in every action's start-up

    info = json.loads(local.run(command("qemu-img", "info", "--output=json", "-f", "qcow2", opened(fd),
                                        query=True)))
    data_file = info.get("format-specific", {}).get("data", {}).get("data-file")
    if info.get("backing-filename") or data_file:
        # qemu would read the other file too, past the restricted-directory check
        raise InvalidInput(f"qcow2 image {path} uses another file "
                           f"({info.get('backing-filename') or data_file}): not supported")
    if keep_qcow2:  # on a device it cannot grow: the volume gets room for every cluster
        measured = json.loads(local.run(command("qemu-img", "measure", "--output=json", "-f", "qcow2",
                                                "-O", "qcow2", opened(fd), query=True)))
        return Image(path, "raw", os.fstat(fd).st_size, fd, data_format="qcow2",
                     room=int(measured["fully-allocated"]))
    return Image(path, "qcow2", int(info["virtual-size"]), fd)


def opened(fd: int) -> str:
    """A path by which another process opens the very file open as fd here,
    whatever its name points at now."""
    return f"/proc/{os.getpid()}/fd/{fd}"


def _url_size(url: str, timeout: float) -> int:
    with _open_url(url, timeout) as response:
        length = response.headers.get("Content-Length")
    if length is None or not (length.isascii() and length.isdigit()):
        raise OneIscsiError(f"{url} does not say its size (no Content-Length)")
    return int(length)


def _open_url(url: str, timeout: float):
    import http.client
    import urllib.error
    import urllib.request

    class HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
        """Redirects are followed to http(s) only (urllib's own would follow to ftp)."""

        def redirect_request(self, req, fp, code, msg, headers, newurl):
            if not is_url(newurl):
                raise urllib.error.URLError(f"redirected to {newurl}, which is not http(s)")
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    opener = urllib.request.build_opener(HttpOnlyRedirects)
    try:
        return opener.open(url, timeout=timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise OneIscsiError(f"cannot download {url}: {reason}") from None


@contextmanager
def raw_chunks(image: Image, local: Runner) -> Iterator[Iterable[bytes]]:
    """The image's raw bytes, in chunks of at most CHUNK bytes."""
    if image.is_url:
        with _open_url(image.path, local.cfg.timeout) as response:
            yield read_chunks(response)
    elif image.format == "qcow2":
        with local.output_stream(command("nbdcopy", "--", "[", "qemu-nbd", "-r", "-f", "qcow2", opened(image.fd),
                                         "]", "-", query=True)) as stream:
            yield read_chunks(stream)
    else:
        yield file_chunks(image.fd)


def read_chunks(stream) -> Iterator[bytes]:
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return
        yield chunk


def file_chunks(fd: int) -> Iterator[bytes]:
    """The bytes of the open file fd from its start, wherever its offset is."""
    offset = 0
    while chunk := os.pread(fd, CHUNK, offset):
        offset += len(chunk)
        yield chunk


def file_blocks(fd: int, digests: Optional["Digests"] = None) -> Iterator[imagewriter.Block]:
    """The blocks of the open file fd from its start, its data as Spans to
    be read again when sent, with its checksums taken on the way."""
    buffer = bytearray(CHUNK)  # one buffer, read into again and again
    offset = 0
    while count := os.preadv(fd, [buffer], offset):
        block = buffer if count == CHUNK else bytes(buffer[:count])
        if digests is not None:
            digests.update(block)
        yield offset, count, None if imagewriter.is_zero(block) else imagewriter.Span(offset, count)
        offset += count


def read_ahead(items: Iterator[T], depth: int = READ_AHEAD) -> Iterator[T]:
    """items, made by a thread of their own up to depth ahead of their use
    (the scan of an image overlaps its copy); the thread's error is raised here."""
    import queue
    import threading

    made: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def make() -> None:
        try:
            for item in items:
                made.put((True, item))
                if stop.is_set():
                    return
            made.put((False, None))
        except Exception as err:  # raised where the items are used
            made.put((False, err))

    threading.Thread(target=make, daemon=True).start()
    try:
        while True:
            more, item = made.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        while not made.empty():  # a maker waiting for room sees stop once it has it
            made.get_nowait()


class Digests:
    """Checksums of the bytes that pass through, for the algorithms asked for."""

    def __init__(self, expected: Mapping[str, str]):
        self.expected = {name: value.lower() for name, value in expected.items() if value}
        if self.expected:  # imported only then: it costs every action's start-up some milliseconds
            import hashlib
        self.hashes = {name: hashlib.new(name) for name in self.expected}

    def through(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.update(chunk)
            yield chunk

    def read(self, fd: int) -> None:
        """Take in the whole file fd, when a checksum is asked for."""
        if self.hashes:
            for chunk in file_chunks(fd):
                self.update(chunk)

    def update(self, data) -> None:
        for digest in self.hashes.values():
            digest.update(data)

    def check(self, path: str) -> None:
        for name, digest in self.hashes.items():
            if digest.hexdigest() != self.expected[name]:
                raise OneIscsiError(f"{name.upper()} of {path} is {digest.hexdigest()}, "
                                    f"expected {self.expected[name]}")
