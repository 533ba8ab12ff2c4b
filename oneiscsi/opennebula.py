"""OpenNebula's driver protocol: the action XML, `host:path` arguments, log lines."""
from __future__ import annotations

import binascii
import sys
from dataclasses import dataclass
from typing import Mapping

from .errors import InvalidInput

ROOT = "DS_DRIVER_ACTION_DATA"
# Datastore template attributes that override iscsi.conf.
TEMPLATE_KEYS = ("HOST", "VG_NAME", "BASE_IQN", "BASE_TID", "RESTRICTED_DIRS", "SAFE_DIRS",
                 "UMASK", "BACKEND", "POOL_DIR", "INITIATORS", "CHAP_USER", "CHAP_PASSWORD")


@dataclass(frozen=True)
class DriverAction:
    image_id: int
    image: Mapping[str, str]       # IMAGE/* leaves: PATH, SIZE, FSTYPE, SOURCE ...
    image_template: Mapping[str, str]  # IMAGE/TEMPLATE/*: MD5, SHA1 ...
    datastore: Mapping[str, str]   # DATASTORE/TEMPLATE/*

    def config_overrides(self) -> dict[str, str]:
        return {key: self.datastore[key] for key in TEMPLATE_KEYS if self.datastore.get(key)}

    def require(self, key: str) -> str:
        value = self.image.get(key, "").strip()
        if not value:
            raise InvalidInput(f"missing IMAGE/{key} in {ROOT}")
        return value


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


@dataclass(frozen=True)
class HostPath:
    host: str
    path: str

    def __str__(self) -> str:
        return f"{self.host}:{self.path}"


def host_path(argument: str) -> HostPath:
    """Split OpenNebula's `host:/path` argument."""
    host, sep, path = argument.partition(":")
    if not sep or not host or not path.startswith("/"):
        raise InvalidInput(f"expected HOST:/PATH, got {argument!r}")
    return HostPath(host, path)


def log_info(action: str, text: str) -> None:
    print(f"INFO: {action}: {text}", file=sys.stderr)


def log_error(action: str, text: str) -> None:
    print(f"ERROR: {action}: {text}", file=sys.stderr)


def error_message(action: str, text: str, stream=None) -> None:
    """The block OpenNebula reads from a failed driver action."""
    text = " ".join(text.splitlines())
    stream = stream or sys.stderr
    print(f"ERROR: {action}: {text}", file=stream)
    print("ERROR MESSAGE --8<------", file=stream)
    print(text, file=stream)
    print("ERROR MESSAGE ------>8--", file=stream)
