"""Configuration: defaults < iscsi.conf < datastore template < environment < options.

Built once per invocation into an immutable `Config` and passed down.
"""
from __future__ import annotations

import math
import os
import re
import shlex
import socket
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Optional

from .errors import OneIscsiError

ENV_PREFIX = "ONE_ISCSI_"
CONF_ENV = "ONE_ISCSI_CONF"

# Configuration key of each external program, and the program name that
# command builders put in argv[0].
TOOL_KEYS = {
    "TGTADM": "tgtadm",
    "TGT_ADMIN": "tgt-admin",
    "ISCSIADM": "iscsiadm",
    "LVCREATE": "lvcreate",
    "LVREMOVE": "lvremove",
    "LVS": "lvs",
    "VGS": "vgs",
    "DD": "dd",
    "QEMU_IMG": "qemu-img",
    "MKFS": "mkfs",
    "MKSWAP": "mkswap",
    "TRUNCATE": "truncate",
    "FALLOCATE": "fallocate",
    "BLKDISCARD": "blkdiscard",
}

DEFAULTS = {
    "HOST": "localhost",
    "BASE_IQN": "iqn.2012-02.org.opennebula",
    "VG_NAME": "vg-one",
    "BASE_TID": "1",
    "NO_ISCSI": "$HOSTNAME",
    "TIMEOUT": "60",
    "COPY_TIMEOUT": "3600",
    "LOCK_FILE": "/run/lock/one-iscsi.lock",
    "LOCK_TIMEOUT": "60",
    "DEVICE_TIMEOUT": "30",
    "DEVICE_DIR": "/dev/disk/by-path",
    "PORTAL_PORT": "3260",
    "BACKEND": "lvm",
    "POOL_DIR": "/srv/one-iscsi",
    "RESTRICTED_DIRS": "",
    "SAFE_DIRS": "",
    "UMASK": "077",
    "CONF_DIR": "/etc/tgt/conf.d/one-iscsi",
    "INITIATORS": "ALL",
    "CHAP_USER": "",
    "CHAP_PASSWORD": "",
    "SUDO": "sudo",
    "SSH": "ssh",
    "COPY_SSH_OPTIONS": "-o Ciphers=^aes128-gcm@openssh.com,aes256-gcm@openssh.com",
    **{key: program for key, program in TOOL_KEYS.items()},
}

# What each key means, for --help, the man page and `config show`.
DESCRIPTIONS = {
    "HOST": "target server running tgtd and LVM (ssh host name or alias)",
    "BASE_IQN": "prefix of every target name",
    "VG_NAME": "volume group that holds the images",
    "BASE_TID": "lowest target ID one-iscsi allocates",
    "NO_ISCSI": "hosts (space separated) that use the volumes directly, without iSCSI",
    "TIMEOUT": "seconds any one remote or local command may take",
    "COPY_TIMEOUT": "seconds an image copy may take",
    "LOCK_FILE": "lock file on the target server that serialises target creation",
    "LOCK_TIMEOUT": "seconds to wait for LOCK_FILE",
    "DEVICE_TIMEOUT": "seconds to wait for the device after an iSCSI login",
    "DEVICE_DIR": "where the hosts' udev links iSCSI devices by path",
    "PORTAL_PORT": "TCP port of the target server's iSCSI portal, for discovery and login",
    "BACKEND": "storage of the images on the target server: lvm or file",
    "POOL_DIR": "directory of the file backend on the target server (images in POOL_DIR/VG_NAME)",
    "RESTRICTED_DIRS": "directories (space separated) images may not be copied from, besides the built-in ones",
    "SAFE_DIRS": "directories (space separated) allowed even inside restricted ones",
    "UMASK": "octal umask applied to the image files of the file backend",
    "CONF_DIR": "directory of the per-target tgt config files on the target server",
    "INITIATORS": "initiator addresses, networks or IQNs (space separated) allowed to use new targets",
    "CHAP_USER": "CHAP user bound to new targets (empty: no CHAP)",
    "CHAP_PASSWORD": "CHAP password of CHAP_USER (12 to 16 characters)",
    "SUDO": "prefix for privileged commands (empty: none)",
    "SSH": "ssh command used to reach other hosts",
    "COPY_SSH_OPTIONS": "more ssh options for image data (default: AES-GCM first, the fastest cipher with AES-NI)",
    **{key: f"command line for {program}" for key, program in TOOL_KEYS.items()},
}

_ASSIGNMENT = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class ConfigError(OneIscsiError):
    """A configuration file or value that cannot be used."""


def hostname() -> str:
    return socket.gethostname()


def parse_shell_conf(text: str, origin: str, env: Mapping[str, str]) -> dict[str, str]:
    """Read `KEY=VALUE` lines in shell syntax: comments, quotes, backslashes,
    `$VAR` and `${VAR}` (expanded outside single quotes, as the shell does)."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ASSIGNMENT.fullmatch(stripped)
        if not match:
            raise ConfigError(f"{origin}:{number}: expected KEY=VALUE, got {stripped!r}")
        key, raw = match.groups()
        try:
            values[key] = _shell_word(raw, lambda name: _lookup(name, values, env))
        except ValueError as err:
            raise ConfigError(f"{origin}:{number}: {err} in the value of {key}") from None
    return values


def _shell_word(raw: str, lookup) -> str:
    """The one word raw holds, quotes removed and variables expanded."""
    word, i, quote = [], 0, None
    while i < len(raw):
        char = raw[i]
        if quote == "'":
            if char == "'":
                quote = None
            else:
                word.append(char)
        elif char == "\\" and i + 1 < len(raw) and (quote is None or raw[i + 1] in '$`"\\'):
            i += 1
            word.append(raw[i])
        elif char == "$" and (variable := _VARIABLE.match(raw, i)):
            word.append(lookup(variable.group(1) or variable.group(2)))
            i = variable.end()
            continue
        elif quote == '"':
            if char == '"':
                quote = None
            else:
                word.append(char)
        elif char in "'\"":
            quote = char
        elif char.isspace():
            rest = raw[i:].strip()
            if rest and not rest.startswith("#"):
                raise ValueError("spaces outside quotes")
            break
        else:
            word.append(char)
        i += 1
    if quote:
        raise ValueError(f"no closing {quote}")
    return "".join(word)


def _lookup(name: str, known: Mapping[str, str], env: Mapping[str, str]) -> str:
    if name in known:
        return known[name]
    if name == "HOSTNAME":
        return env.get("HOSTNAME") or hostname()
    return env.get(name, "")


@dataclass(frozen=True)
class Config:
    host: str
    base_iqn: str
    vg_name: str
    base_tid: int
    no_iscsi: tuple[str, ...]
    timeout: float
    copy_timeout: float
    lock_file: str
    lock_timeout: float
    device_timeout: float
    device_dir: str
    portal_port: int
    backend: str
    pool_dir: str
    restricted_dirs: tuple[str, ...]
    safe_dirs: tuple[str, ...]
    umask: int
    conf_dir: str
    initiators: tuple[str, ...]
    chap_user: str
    chap_password: str = field(repr=False)
    sudo: tuple[str, ...]
    ssh: tuple[str, ...]
    copy_ssh_options: tuple[str, ...]
    tools: Mapping[str, tuple[str, ...]] = field(repr=False)

    def tool(self, program: str) -> Optional[tuple[str, ...]]:
        """The configured argv prefix for a program, or None if it is not a tool."""
        return self.tools.get(program)

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> "Config":
        def split(key: str) -> tuple[str, ...]:
            try:
                return tuple(shlex.split(values[key]))
            except ValueError as err:
                raise ConfigError(f"{key}: {err}") from None

        tools = {}
        for key, program in TOOL_KEYS.items():
            tools[program] = split(key)
            if not tools[program]:
                raise ConfigError(f"{key} must not be empty")
        if not split("SSH"):
            raise ConfigError("SSH must not be empty")
        if bool(values["CHAP_USER"]) != bool(values["CHAP_PASSWORD"]):
            raise ConfigError("CHAP_USER and CHAP_PASSWORD go together: set both or neither")
        if any(char.isspace() for char in values["CHAP_USER"] + values["CHAP_PASSWORD"]):
            raise ConfigError("CHAP_USER and CHAP_PASSWORD must not contain spaces")
        return cls(
            host=values["HOST"],
            base_iqn=values["BASE_IQN"],
            vg_name=values["VG_NAME"],
            base_tid=_number(values, "BASE_TID", int, minimum=1),
            no_iscsi=tuple(values["NO_ISCSI"].split()),
            timeout=_number(values, "TIMEOUT", float, minimum=0.001),
            copy_timeout=_number(values, "COPY_TIMEOUT", float, minimum=0.001),
            lock_file=values["LOCK_FILE"],
            lock_timeout=_number(values, "LOCK_TIMEOUT", float, minimum=0.001),
            device_timeout=_number(values, "DEVICE_TIMEOUT", float, minimum=0.001),
            device_dir=values["DEVICE_DIR"],
            portal_port=_number(values, "PORTAL_PORT", int, minimum=1),
            backend=_choice(values, "BACKEND", ("lvm", "file")),
            pool_dir=values["POOL_DIR"],
            restricted_dirs=tuple(values["RESTRICTED_DIRS"].split()),
            safe_dirs=tuple(values["SAFE_DIRS"].split()),
            umask=_octal(values, "UMASK"),
            conf_dir=values["CONF_DIR"],
            initiators=tuple(values["INITIATORS"].split()) or ("ALL",),
            chap_user=values["CHAP_USER"],
            chap_password=values["CHAP_PASSWORD"],
            sudo=split("SUDO"),
            ssh=split("SSH"),
            copy_ssh_options=split("COPY_SSH_OPTIONS"),
            tools=MappingProxyType(tools),
        )


def _number(values: Mapping[str, str], key: str, kind: type, minimum: float):
    text = values[key]
    try:
        number = kind(text)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or number < minimum:
        wanted = "a positive integer" if kind is int else "a positive number"
        raise ConfigError(f"{key} must be {wanted}, got {text!r}")
    return number


def _octal(values: Mapping[str, str], key: str) -> int:
    try:
        number = int(values[key], 8)
    except ValueError:
        number = -1
    if not 0 <= number <= 0o777:
        raise ConfigError(f"{key} must be an octal number from 0 to 777, got {values[key]!r}")
    return number


def _choice(values: Mapping[str, str], key: str, choices: tuple[str, ...]) -> str:
    if values[key] not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {values[key]!r}")
    return values[key]


def load(
    conf_file: Optional[str] = None,
    template: Optional[Mapping[str, str]] = None,
    overrides: Optional[Mapping[str, Optional[str]]] = None,
    env: Optional[Mapping[str, str]] = None,
) -> Config:
    """Merge every source of configuration, lowest precedence first."""
    env = os.environ if env is None else env
    values = dict(DEFAULTS)
    values["NO_ISCSI"] = env.get("HOSTNAME") or hostname()
    conf_file = conf_file or env.get(CONF_ENV)
    if conf_file:
        values.update(_known(read_conf_file(conf_file, env)))
    values.update(_known(template or {}))
    values.update(
        {key[len(ENV_PREFIX):]: value for key, value in env.items() if key.startswith(ENV_PREFIX)
         and key[len(ENV_PREFIX):] in DEFAULTS}
    )
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return Config.from_values(values)


def _known(values: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in values.items() if key in DEFAULTS}


def read_conf_file(path: str, env: Mapping[str, str]) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as conf:
            text = conf.read()
    except OSError as err:
        raise ConfigError(f"cannot read configuration {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"configuration {path} is not UTF-8 text") from None
    return parse_shell_conf(text, path, env)
