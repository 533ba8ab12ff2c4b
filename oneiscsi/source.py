"""The image to copy: a local file (raw or qcow2) or an http(s) URL, read as a
stream of raw bytes, never held whole in memory or copied to a temporary file."""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

from .command import command
from .errors import InvalidInput, OneIscsiError
from .run import Runner
from .units import MIB, whole_mib

CHUNK = MIB  # the zero-detection block of imagewriter.py
QCOW2_MAGIC = b"QFI\xfb"


@dataclass(frozen=True)
class Image:
    path: str
    format: str  # "raw" or "qcow2"
    size: int    # bytes of raw data

    @property
    def is_url(self) -> bool:
        return is_url(self.path)

    @property
    def size_mb(self) -> int:
        """Whole MiB, rounded up."""
        return whole_mib(self.size)


def is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def inspect(path: str, local: Runner) -> Image:
    if is_url(path):
        return Image(path, "raw", _url_size(path, local.cfg.timeout))
    real = os.path.realpath(path)  # the file the restricted-directory check judged
    try:
        with open(real, "rb") as image:
            magic = image.read(4)
            size = os.fstat(image.fileno()).st_size
    except OSError as err:
        raise InvalidInput(f"cannot read image file {path}: {err.strerror}") from None
    if magic != QCOW2_MAGIC:
        return Image(real, "raw", size)
    info = json.loads(local.run(command("qemu-img", "info", "--output=json", "-f", "qcow2", real, query=True)))
    data_file = info.get("format-specific", {}).get("data", {}).get("data-file")
    if info.get("backing-filename") or data_file:
        # qemu would read the other file too, past the restricted-directory check
        raise InvalidInput(f"qcow2 image {path} uses another file "
                           f"({info.get('backing-filename') or data_file}): not supported")
    return Image(real, "qcow2", int(info["virtual-size"]))


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

    try:
        return urllib.request.urlopen(url, timeout=timeout)
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
        with local.output_stream(command("nbdcopy", "--", "[", "qemu-nbd", "-r", "-f", "qcow2", image.path,
                                         "]", "-", query=True)) as stream:
            yield read_chunks(stream)
    else:
        with open(image.path, "rb") as stream:
            yield read_chunks(stream)


def read_chunks(stream) -> Iterator[bytes]:
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return
        yield chunk


class Digests:
    """Checksums of the bytes that pass through, for the algorithms asked for."""

    def __init__(self, expected: Mapping[str, str]):
        self.expected = {name: value.lower() for name, value in expected.items() if value}
        self.hashes = {name: hashlib.new(name) for name in self.expected}

    def through(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            for digest in self.hashes.values():
                digest.update(chunk)
            yield chunk

    def check(self, path: str) -> None:
        for name, digest in self.hashes.items():
            if digest.hexdigest() != self.expected[name]:
                raise OneIscsiError(f"{name.upper()} of {path} is {digest.hexdigest()}, "
                                    f"expected {self.expected[name]}")
