"""OpenNebula's driver protocol, 3.4 to 7.x: reading a call (the action XML
as an argument or on stdin, object IDs, `host:path` arguments), knowing which
OpenNebula calls, and writing the reply that version parses (stdout, INFO
lines, the ERROR MESSAGE block). Knows nothing of tgtd or LVM.
"""
from __future__ import annotations

import binascii
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from .errors import InvalidInput, OneIscsiError, shown

if TYPE_CHECKING:
    from .tm import HostPath

ROOT = "DS_DRIVER_ACTION_DATA"
CHECKSUMS = ("md5", "sha1")  # IMAGE/TEMPLATE attributes MD5, SHA1
SAVE_AS = "save_as"
STDIN_FROM = (6, 8)  # from 6.8 on the action XML comes on stdin, the ID alone as argument
# where an OpenNebula installation says its version, under ONE_LOCATION or system-wide
VERSION_FILES = ("var/remotes/VERSION", "lib/ruby/opennebula/version.rb", "lib/ruby/opennebula.rb")
SYSTEM_VERSION_FILES = ("/var/lib/one/remotes/VERSION", "/usr/lib/one/ruby/opennebula/version.rb",
                        "/usr/lib/one/ruby/opennebula.rb", "/usr/lib/one/ruby/OpenNebula.rb")


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
    def save_as(self) -> bool:
        """mkfs of the image a VM's disk will be saved into (3.4: FSTYPE, later FORMAT)."""
        return SAVE_AS in (self.image.get("FSTYPE"), self.image.get("FORMAT"))

    def filesystem(self, version: tuple[int, ...]) -> str:
        """mkfs: the filesystem to make, `raw` for none. 3.x names it FSTYPE
        (empty: ext3, as 3.4's driver made), later versions FS (FSTYPE before
        it; empty: none)."""
        if version < (4,):
            return self.image.get("FSTYPE", "").strip() or "ext3"
        data_format = self.image.get("FORMAT", "").strip()
        if data_format not in ("", "raw"):
            raise InvalidInput(f"mkfs of FORMAT {shown(data_format)} is not supported: the iscsi driver makes "
                               "raw images")
        return (self.image.get("FS") or self.image.get("FSTYPE") or "").strip() or "raw"  # 4.x: FSTYPE

    @property
    def keeps_qcow2(self) -> bool:
        """The VM reads the device as qcow2 (DRIVER=qcow2): copy a qcow2 file as it is."""
        return self.image_template.get("DRIVER", "").lower() == "qcow2"

    @property
    def checksums(self) -> dict[str, str]:
        """Expected digests of the image file, by hashlib name."""
        return {name: self.image_template.get(name.upper(), "") for name in CHECKSUMS}


@dataclass(frozen=True)
class Call:
    """A datastore action as called: its base64 XML and object ID, and whether
    the XML came on stdin (OpenNebula 6.8 and later)."""
    data: str
    object_id: str
    on_stdin: bool


def read_call(arguments: list[str], stdin) -> Call:
    """`DRV_ACTION ID` (up to 6.6), or `ID` with DRV_ACTION on stdin (6.8 on)."""
    if len(arguments) == 2:
        return Call(arguments[0], arguments[1], False)
    if len(arguments) != 1:
        raise InvalidInput("expected DRV_ACTION ID, or ID with DRV_ACTION on stdin")
    if stdin.isatty():
        raise InvalidInput(f"no {ROOT}: give DRV_ACTION before the ID, or on stdin")
    return Call(stdin.read(), arguments[0], True)


def version_of(configured: str, one_location: str, on_stdin: bool = False) -> tuple[int, ...]:
    """The version of the OpenNebula that calls: OPENNEBULA_VERSION, else the
    installation's own word. A call with its XML on stdin is 6.8 or later
    (6.4 and 6.6 could be set to call so)."""
    text, origin = configured, "OPENNEBULA_VERSION"
    if not text:
        text, origin = installed_version(one_location)
    version = tuple(int(part) for part in text.split(".")) if text else ()
    if on_stdin:
        if version and version < (6, 4):
            raise InvalidInput(f"called as OpenNebula 6.8 and later call (the action on stdin), but {origin} "
                               f"says {text}")
        return version or STDIN_FROM
    if not version:
        raise InvalidInput("cannot tell which OpenNebula calls, and so how to reply: set OPENNEBULA_VERSION "
                           "in iscsi.conf (found no version in "
                           f"{', '.join(_version_files(one_location))})")
    return version


def installed_version(one_location: str) -> tuple[str, str]:
    """(version, the file that says it) of the OpenNebula installed here, or ("", "")."""
    import re

    for path in _version_files(one_location):
        try:
            with open(path, encoding="utf-8", errors="replace") as file:
                text = file.read(65536)
        except OSError:
            continue
        if path.endswith("/VERSION"):
            found = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)+)\s*", text)
        else:
            found = re.search(r"^\s*VERSION\s*=\s*['\"]([0-9]+(?:\.[0-9]+)+)['\"]", text, re.MULTILINE)
        if found:
            return found.group(1), path
    return "", ""


def _version_files(one_location: str) -> tuple[str, ...]:
    if one_location:
        return tuple(f"{one_location}/{path}" for path in VERSION_FILES)
    return SYSTEM_VERSION_FILES


def decode(data: str, image_id: str) -> DriverAction:
    """Decode the base64 DS_DRIVER_ACTION_DATA; image_id: the call's object
    ID (an image's, a datastore's for monitor, a request's for stat)."""
    if not (image_id.isascii() and image_id.isdigit()):
        raise InvalidInput(f"ID must be a non-negative integer, got {shown(repr(image_id))}")
    root = _xml(data, ROOT)
    return DriverAction(
        image_id=int(image_id),
        image=_leaves(root.find("IMAGE")),
        image_template=_leaves(root.find("IMAGE/TEMPLATE")),
        datastore=_leaves(root.find("DATASTORE/TEMPLATE")),
    )


def _xml(data: str, tag: str):
    """The root element of base64 XML, which must be <tag>."""
    import base64

    from defusedxml import ElementTree
    from defusedxml.common import DefusedXmlException

    try:
        xml = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"malformed base64 in {tag}") from None
    try:
        root = ElementTree.fromstring(xml)
    except DefusedXmlException as err:
        raise InvalidInput(f"refused XML in {tag}: {type(err).__name__}") from None
    except ElementTree.ParseError as err:
        raise InvalidInput(f"malformed XML in {tag}: {err}") from None
    if root.tag != tag:
        raise InvalidInput(f"expected <{tag}>, got <{root.tag}>")
    return root


def vm_disks(data: str, tm_mad: str = "iscsi") -> list[int]:
    """The DISK_IDs of the VM's disks of tm_mad, from the base64 VM XML the
    live migration steps get on stdin."""
    root = _xml(data, "VM")
    disks = []
    for disk in root.findall("TEMPLATE/DISK"):
        fields = _leaves(disk)
        if fields.get("TM_MAD") == tm_mad:
            disk_id = fields.get("DISK_ID", "")
            if not (disk_id.isascii() and disk_id.isdigit()):
                raise InvalidInput(f"VM XML: DISK_ID must be a non-negative integer, got {shown(repr(disk_id))}")
            disks.append(int(disk_id))
    return disks


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


def cp_reply(version: tuple[int, ...], source: str, size_mb: int, data_format: str) -> str:
    """3.x: SOURCE SIZE_MB; 4.x and 5.x: SOURCE; from 6.0: SOURCE FORMAT."""
    if version < (4,):
        return f"{source} {size_mb}"
    return source if version < (6,) else f"{source} {data_format}"


def mkfs_reply(version: tuple[int, ...], source: str, size_mb: int) -> str:
    """3.x: SOURCE SIZE_MB; later: the whole reply is the SOURCE."""
    return f"{source} {size_mb}" if version < (4,) else source


def monitor_reply(used_mb: int, total_mb: int, free_mb: int) -> str:
    return f"USED_MB={used_mb}\nTOTAL_MB={total_mb}\nFREE_MB={free_mb}"


def unsupported(driver: str, action: str) -> None:
    """A driver action the iscsi drivers do not offer: a clean FAILURE."""
    raise OneIscsiError(f"{shown(action, 40)} is not supported by the iscsi driver ({driver} action)")


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
