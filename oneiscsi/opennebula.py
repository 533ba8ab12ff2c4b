"""OpenNebula's driver protocol (3.4): reading a call (the action XML, image
IDs, `host:path` arguments) and writing its reply (stdout, INFO lines, the
ERROR MESSAGE block). Knows nothing of tgtd or LVM: the actions do the work.
"""
from __future__ import annotations

import binascii
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from .errors import InvalidInput, shown

if TYPE_CHECKING:
    from .tm import HostPath

ROOT = "DS_DRIVER_ACTION_DATA"
CHECKSUMS = ("md5", "sha1")  # IMAGE/TEMPLATE attributes MD5, SHA1


@dataclass(frozen=True)
class DriverAction:
    image_id: int
    image: Mapping[str, str]       # IMAGE/* leaves: PATH, SIZE, FSTYPE, SOURCE ...
    image_template: Mapping[str, str]  # IMAGE/TEMPLATE/*: MD5, SHA1 ...
    datastore: Mapping[str, str]   # DATASTORE/TEMPLATE/*

    def require(self, key: str) -> str:
        value = self.image.get(key, "").strip()
        if not value:
            raise InvalidInput(f"missing IMAGE/{key} in {ROOT}")
        return value

    @property
    def path(self) -> str:
        return self.require("PATH")

    @property
    def source(self) -> str:
        return self.require("SOURCE")

    @property
    def size_mb(self) -> int:
        size = self.require("SIZE")
        if not (size.isascii() and size.isdigit()) or int(size) < 1:
            raise InvalidInput(f"IMAGE/SIZE must be a positive number of MB, got {size!r}")
        return int(size)

    @property
    def fstype(self) -> str:
        return self.image.get("FSTYPE", "")

    @property
    def checksums(self) -> dict[str, str]:
        """Expected digests of the image file, by hashlib name."""
        return {name: self.image_template.get(name.upper(), "") for name in CHECKSUMS}


def decode(data: str, image_id: str) -> DriverAction:
    """Decode the base64 DS_DRIVER_ACTION_DATA argument."""
    import base64

    from defusedxml import ElementTree
    from defusedxml.common import DefusedXmlException

    if not (image_id.isascii() and image_id.isdigit()):
        raise InvalidInput(f"image ID must be a non-negative integer, got {image_id!r}")
    try:
        xml = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"malformed base64 in {ROOT} argument") from None
    try:
        root = ElementTree.fromstring(xml)
    except DefusedXmlException as err:
        raise InvalidInput(f"refused XML in {ROOT}: {type(err).__name__}") from None
    except ElementTree.ParseError as err:
        raise InvalidInput(f"malformed XML in {ROOT}: {err}") from None
    if root.tag != ROOT:
        raise InvalidInput(f"expected <{ROOT}>, got <{root.tag}>")
    return DriverAction(
        image_id=int(image_id),
        image=_leaves(root.find("IMAGE")),
        image_template=_leaves(root.find("IMAGE/TEMPLATE")),
        datastore=_leaves(root.find("DATASTORE/TEMPLATE")),
    )


def _leaves(element) -> dict[str, str]:
    if element is None:
        return {}
    return {child.tag: (child.text or "").strip() for child in element if len(child) == 0}


def host_path(argument: str) -> "HostPath":
    """Split OpenNebula's `host:/path` argument."""
    from .tm import HostPath

    host, sep, path = argument.partition(":")
    if not sep or not host or not path.startswith("/"):
        raise InvalidInput(f"expected HOST:/PATH, got {shown(repr(argument))}")
    return HostPath(host, path)


def registered_reply(source: str, size_mb: int) -> str:
    """cp and mkfs: the image's SOURCE and its size."""
    return f"{source} {size_mb}"


def monitor_reply(used_mb: int, total_mb: int, free_mb: int) -> str:
    return f"USED_MB={used_mb}\nTOTAL_MB={total_mb}\nFREE_MB={free_mb}"


def log_info(action: str, text: str) -> None:
    print(f"INFO: {action}: {text}", file=sys.stderr)


def error_message(action: str, text: str, stream=None) -> None:
    """The block OpenNebula reads from a failed driver action."""
    text = " ".join(text.splitlines())
    stream = stream or sys.stderr
    print(f"ERROR: {action}: {text}", file=stream)
    print("ERROR MESSAGE --8<------", file=stream)
    print(text, file=stream)
    print("ERROR MESSAGE ------>8--", file=stream)
