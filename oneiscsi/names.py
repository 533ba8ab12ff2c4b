"""Target names: `<BASE_IQN>:<TARGET_HOST>.<VG_NAME>.<LV_NAME>`.

The host, volume group and volume are recovered by splitting the part after
the first `:` on its last two dots, as the original driver did.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from . import values
from .errors import InvalidInput

MAX_LENGTH = values.MAX_IQN


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


def _checked(check: Callable[[str], str], what: str, text: str) -> str:
    try:
        return check(text)
    except ValueError as err:
        raise InvalidName(f"{what} {text!r} {err}" if text else f"{what} is empty") from None


def validate(iqn: str) -> str:
    """Return iqn if tgtd would accept it as a target name, else raise InvalidName."""
    return _checked(values.iqn, "IQN", iqn)


def validate_base(base: str) -> str:
    return _checked(values.base_iqn, "base IQN", base)


def validate_host(host: str) -> str:
    return _checked(values.target_host, "host name", host)


def validate_part(kind: str, name: str) -> str:
    """A volume group or volume name: no dots, so the IQN can be split again."""
    return _checked(values.name_part, f"{kind} name", name)


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
