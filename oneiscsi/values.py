"""What a value may be, by the rules of the programs that read it.

Values from iscsi.conf, a datastore template or the environment end up on
tgtadm's command line, in the target files tgt-admin reads at tgt's start
(through a shell), and in iscsiadm's node records. Each check here returns
the value, or raises ValueError("must ...") saying what it must be; config.py
names the key and where the value came from. Pure; imports nothing of the
package.
"""
from __future__ import annotations

import re

MAX_IQN = 223  # RFC 3720
# tgtd accepts only these characters in a target name.
TGT_CHARS = re.compile(r"[A-Za-z0-9:.-]+")
IQN = re.compile(r"iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[A-Za-z0-9][A-Za-z0-9.-]*(:[A-Za-z0-9:.-]+)?")
# the host part of a target name
TARGET_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9:.-]*[A-Za-z0-9])?")
# a host name as DNS has it: what a portal may be taken from
HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
# a volume group or volume name: no dots, so the IQN can be split again
NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
# other initiator name formats (RFC 3720): eui. and naa. with hex digits
OTHER_INITIATOR = re.compile(r"(eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16}(?:[0-9A-Fa-f]{16})?)")
# an IPv4/IPv6 address or network as written: no IPv6 zone (`%...`, which
# ipaddress takes with any text) or anything else a shell reads
ADDRESS_CHARS = re.compile(r"[0-9A-Fa-f:./]+")
# nothing a shell, tgt-admin's parser or a tgtadm option reads as syntax
PATH_CHARS = re.compile(r"/[A-Za-z0-9._+/-]*")
CHAP_USER = re.compile(r"[A-Za-z0-9_.@:][A-Za-z0-9_.@:-]{0,254}")
# not starting with ~: tgt-admin hands a line with ~ to a shell, which expands a leading one
CHAP_PASSWORD = re.compile(r"[A-Za-z0-9_.@:+=%,/^][A-Za-z0-9_.@:+=%,/^~-]{11,15}")
MAX_TID = 2**31 - 1
# tgtd takes any 64-bit LUN; initiators address 1 to 16383 (SAM's flat space)
MAX_LUN = 16383


def path(text: str) -> str:
    """An absolute, normalised path without spaces, quotes or shell syntax;
    a trailing slash is dropped."""
    if not text.startswith("/"):
        raise ValueError("must be an absolute path")
    if not PATH_CHARS.fullmatch(text):
        raise ValueError("must hold only letters, digits and . _ + - / (no spaces, quotes or shell syntax)")
    trimmed = text.rstrip("/") or "/"
    if "//" in trimmed or any(part in (".", "..") for part in trimmed.split("/")):
        raise ValueError("must be a normalised path (no //, . or ..)")
    return trimmed


def initiator(text: str) -> str:
    """ALL, an IPv4/IPv6 address or network, or an initiator name (iqn., eui., naa.)."""
    import ipaddress  # only when INITIATORS is set: not on every start

    if text == "ALL" or OTHER_INITIATOR.fullmatch(text) or (IQN.fullmatch(text) and len(text) <= MAX_IQN):
        return text
    try:
        if not ADDRESS_CHARS.fullmatch(text):
            raise ValueError
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError("must be ALL, addresses, networks (a.b.c.d/n) or initiator names (iqn., eui., naa.)") \
            from None
    return text


def chap_user(text: str) -> str:
    if text and not CHAP_USER.fullmatch(text):
        raise ValueError("must be up to 255 letters, digits and _ . @ : - (not starting with -)")
    return text


def chap_password(text: str) -> str:
    if text and not CHAP_PASSWORD.fullmatch(text):
        raise ValueError("must be 12 to 16 letters, digits and _ . @ : + = % , / ^ ~ - (not starting with - or ~)")
    return text


def umask(text: str) -> int:
    """An octal umask that denies others write access."""
    try:
        mask = int(text, 8)
    except ValueError:
        mask = -1
    if not 0 <= mask <= 0o777:
        raise ValueError("must be an octal number from 0 to 777")
    if not mask & 0o002:
        raise ValueError("must deny others write access (e.g. 077, 027, 022)")
    return mask


def number(text: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ValueError(f"must be an integer from {low} to {high}")
    return int(text)


def iqn(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    if not TGT_CHARS.fullmatch(text):
        bad = "".join(sorted({c for c in text if not TGT_CHARS.fullmatch(c)}))
        raise ValueError(f"contains characters tgtd refuses: {bad!r}")
    if len(text) > MAX_IQN:
        raise ValueError(f"is longer than {MAX_IQN} characters")
    if not IQN.fullmatch(text):
        raise ValueError("is not of the form iqn.YYYY-MM.reverse.domain[:name]")
    return text


def base_iqn(text: str) -> str:
    if ":" in text:
        raise ValueError("must not contain ':'")
    return iqn(text)


def target_host(text: str) -> str:
    if not TARGET_HOST.fullmatch(text or ""):
        raise ValueError("cannot be part of a target name (letters, digits, '.', ':' and '-' only)")
    return text


def host_name(text: str) -> str:
    if len(text) > 253 or not HOST_NAME.fullmatch(text or "") or ".." in text:
        raise ValueError("must be a host name (letters, digits, '.' and '-' only)")
    return text


def version(text: str) -> str:
    """An OpenNebula version such as 3.4, 6.10 or 7.0.1; empty: not given."""
    if text and not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3}){1,3}", text):
        raise ValueError("must be an OpenNebula version such as 3.4, 6.10 or 7.0")
    return text


def choice(text: str, allowed: tuple[str, ...]) -> str:
    if text not in allowed:
        raise ValueError(f"must be one of {', '.join(value or '(empty)' for value in allowed)}")
    return text


def name_part(text: str) -> str:
    if not NAME_PART.fullmatch(text or ""):
        raise ValueError("cannot be part of a target name (letters, digits and '-' only, not starting with '-')")
    return text
