"""Target names: `<BASE_IQN>:<TARGET_HOST>.<VG_NAME>.<LV_NAME>`.

The host, volume group and volume are recovered by splitting the part after
the first `:` on its last two dots, as the original driver did.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from .errors import InvalidInput

# tgtd accepts only these characters in a target name.
_TGT_CHARS = re.compile(r"[A-Za-z0-9:.-]+")
_IQN = re.compile(r"iqn\.\d{4}-(0[1-9]|1[0-2])\.[A-Za-z0-9][A-Za-z0-9.-]*(:[A-Za-z0-9:.-]+)?")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9:.-]*[A-Za-z0-9])?")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
MAX_LENGTH = 223  # RFC 3720


class InvalidName(InvalidInput):
    """A name that cannot be, or be part of, a target name."""


@dataclass(frozen=True)
class TargetName:
    base: str
    host: str
    vg: str
    lv: str

    @property
    def iqn(self) -> str:
        return f"{self.base}:{self.host}.{self.vg}.{self.lv}"

    def as_dict(self) -> dict[str, str]:
        return {"iqn": self.iqn, **asdict(self)}


def validate(iqn: str) -> str:
    """Return iqn if tgtd would accept it as a target name, else raise InvalidName."""
    if not iqn:
        raise InvalidName("IQN is empty")
    if not _TGT_CHARS.fullmatch(iqn):
        bad = sorted({c for c in iqn if not _TGT_CHARS.fullmatch(c)})
        raise InvalidName(f"IQN {iqn!r} contains characters tgtd refuses: {''.join(bad)!r}")
    if len(iqn) > MAX_LENGTH:
        raise InvalidName(f"IQN {iqn!r} is longer than {MAX_LENGTH} characters")
    if not _IQN.fullmatch(iqn):
        raise InvalidName(f"IQN {iqn!r} is not of the form iqn.YYYY-MM.reverse.domain[:name]")
    return iqn


def validate_base(base: str) -> str:
    if ":" in base:
        raise InvalidName(f"base IQN {base!r} must not contain ':'")
    return validate(base)


def validate_host(host: str) -> str:
    if not _HOST.fullmatch(host or ""):
        raise InvalidName(
            f"host name {host!r} cannot be part of a target name "
            "(letters, digits, '.', ':' and '-' only)")
    return host


def validate_part(kind: str, name: str) -> str:
    """A volume group or volume name: no dots, so the IQN can be split again."""
    if not _NAME.fullmatch(name or ""):
        raise InvalidName(
            f"{kind} name {name!r} cannot be part of a target name "
            "(letters, digits and '-' only, not starting with '-')")
    return name


def build(base: str, host: str, vg: str, lv: str) -> TargetName:
    name = TargetName(validate_base(base), validate_host(host),
                      validate_part("volume group", vg), validate_part("volume", lv))
    validate(name.iqn)
    return name


def parse(iqn: str) -> TargetName:
    validate(iqn)
    base, sep, target = iqn.partition(":")
    parts = target.rsplit(".", 2)
    if not sep or len(parts) != 3 or not all(parts):
        raise InvalidName(f"IQN {iqn!r} is not of the form BASE_IQN:HOST.VG.LV")
    host, vg, lv = parts
    return build(base, host, vg, lv)
