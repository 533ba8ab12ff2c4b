"""Configuration: defaults < iscsi.conf < datastore template < environment < options.

Each key is declared once, in KEYS; the defaults, the help texts, the keys a
datastore template may set, the `Config` object's attributes and the sample
iscsi.conf (`python -m oneiscsi.config FILE`, `make conf`) all come from it.
Built once per invocation into an immutable `Config` and passed down.
"""
from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import dataclass, field, make_dataclass
from types import MappingProxyType
from typing import Callable, Mapping, NamedTuple, Optional, Sequence

from . import values as check
from .errors import InvalidInput, shown

ENV_PREFIX = "ONE_ISCSI_"
CONF_ENV = "ONE_ISCSI_CONF"


class ConfigError(InvalidInput):
    """A configuration file or value that cannot be used: exit status 2."""


@dataclass(frozen=True)
class Key:
    """One configuration key, all there is to know about it."""

    name: str
    default: str                     # text as in iscsi.conf; $HOSTNAME and ${VAR} expand
    parse: Callable[[str], object]   # text -> typed value; ValueError("must be ...") if unusable
    help: str
    template: bool = False           # a datastore template may set it
    secret: bool = False             # never shown: not in repr, error messages or the sample
    active: bool = False             # an uncommented line of the sample (the original driver's keys)
    shown: str = ""                  # how documentation shows the default, when not as its text

    @property
    def attribute(self) -> str:
        """Its attribute of Config."""
        return self.name.lower()

    def value(self, text: str, origin: str = "default"):
        """The typed value of text, or ConfigError naming the key and where
        text came from (file:line, datastore template, environment ...)."""
        try:
            return self.parse(text)
        except ValueError as err:
            got = f", got {shown(repr(text))}" if text and not self.secret else ""
            raise ConfigError(f"{self.name} {err}{got} (from {origin})") from None



# Parsers: the return annotation is the type of Config's attribute.



def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _initiators(text: str) -> tuple[str, ...]:
    return tuple(map(check.initiator, _words(text))) or ("ALL",)





def _hosts(text: str) -> tuple[str, ...]:
    return tuple(map(check.host_name, _words(text)))




def _tid(text: str) -> int:
    return check.number(text, 1, check.MAX_TID)


def _port(text: str) -> int:
    return check.number(text, 1, 65535)


def _argv(text: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(text))
    except ValueError as err:
        raise ValueError(f"must be a command line in shell syntax ({err})") from None


def _command(text: str) -> tuple[str, ...]:
    argv = _argv(text)
    if not argv:
        raise ValueError("must not be empty")
    return argv


def _seconds(text: str) -> float:
    return _positive(float, text, "a positive number", minimum=0.001)


def _positive(kind: type, text: str, wanted: str, minimum: float):
    try:
        number = kind(text)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or number < minimum:
        raise ValueError(f"must be {wanted}")
    return number



def _backend(text: str) -> str:
    return check.choice(text, ("lvm", "file"))


def _target(text: str) -> str:
    return check.choice(text, ("tgt", "lio"))


def _copy_via(text: str) -> str:
    return check.choice(text, ("ssh", "iscsi", "auto"))


def _copy_portal(text: str) -> str:
    """empty, HOST or HOST:PORT"""
    host, colon, port = text.rpartition(":") if ":" in text else (text, "", "")
    if text:
        check.host_name(host)
    if colon:
        _port(port)
    return text


def _optional_path(text: str) -> str:
    return check.path(text) if text else ""


def _yes_no(text: str) -> str:
    return check.choice(text.lower(), ("", "yes", "no"))


# The external programs. Each is configured by the key of its name in upper
# case (TGT_ADMIN for tgt-admin); command builders put the name in argv[0].
PROGRAMS = ("tgtadm", "tgt-admin", "iscsiadm", "lvcreate", "lvremove", "lvs", "vgs", "dd", "qemu-img",
            "mkfs", "mkswap", "truncate", "fallocate", "blkdiscard", "blockdev", "lvextend")
TOOL_KEYS = {program.upper().replace("-", "_"): program for program in PROGRAMS}

KEYS = (
    Key("HOST", "localhost", check.host_name, "target server running tgtd and LVM (ssh host name or alias)",
        template=True, active=True),
    Key("VG_NAME", "vg-one", check.name_part,
        "volume group that holds the images (file backend: the directory under POOL_DIR)",
        template=True, active=True),
    Key("BASE_IQN", "iqn.2012-02.org.opennebula", check.base_iqn,
        "prefix of every target name: BASE_IQN:HOST.VG_NAME.lv-one-<IMAGE_ID>", template=True, active=True),
    Key("BASE_TID", "1", _tid, "lowest target ID one-iscsi allocates", template=True, active=True),
    Key("TARGET", "tgt", _target, "the target server's iSCSI target: tgt (tgtd) or lio (the kernel's LIO, "
        "through python3-rtslib-fb)", template=True),
    Key("NO_ISCSI", "$HOSTNAME", _words,
        "hosts (space separated) that use the volumes directly, without iSCSI "
        "(the target server, when it is also a hypervisor)",
        active=True, shown="this machine's host name"),
    Key("OPENNEBULA_VERSION", "", check.version,
        "OpenNebula version the drivers serve, such as 3.4 or 6.10: it decides the replies of cp, mkfs and "
        "clone (empty: read from the OpenNebula installation)"),
    Key("ONE_LOCATION", "${ONE_LOCATION}", _optional_path,
        "OpenNebula's self-contained install directory: its var and etc are restricted directories "
        "(empty: a system-wide install, /var/lib/one and /etc/one)", shown="the environment's ONE_LOCATION"),
    Key("NON_PERSISTENT", "", _yes_no,
        "yes: tm clone gives a VM a private copy of a non-persistent image; no: clone is refused "
        "(empty: yes from OpenNebula 4 on, no for 3.x callers)"),
    Key("RESTRICTED_DIRS", "", _words,
        "directories (space separated) images may not be copied from, besides the built-in ones",
        template=True),
    Key("SAFE_DIRS", "", _words, "directories (space separated) allowed even inside restricted ones",
        template=True),
    Key("UMASK", "077", check.umask, "octal umask applied to the image files of the file backend (077: mode 0600)",
        template=True),
    Key("BACKEND", "lvm", _backend,
        "storage of the images on the target server: lvm (volumes in VG_NAME) or file "
        "(sparse files in POOL_DIR/VG_NAME)", template=True),
    Key("POOL_DIR", "/srv/one-iscsi", check.path,
        "directory of the file backend on the target server (images in POOL_DIR/VG_NAME)", template=True),
    Key("INITIATORS", "ALL", _initiators,
        "initiator addresses, networks or IQNs (space separated) allowed to use new targets", template=True),
    Key("CHAP_USER", "", check.chap_user, "CHAP user bound to new targets (empty: no CHAP)", template=True),
    Key("CHAP_PASSWORD", "", check.chap_password, "CHAP password of CHAP_USER (12 to 16 characters)",
        template=True, secret=True),
    Key("TARGET_SERVERS", "", _hosts,
        "target servers (space separated) the hosts may log in to, as named in IQNs (empty: any plain host name)"),
    Key("PORTAL_PORT", "3260", _port, "TCP port of the target server's iSCSI portal, for discovery and login"),
    Key("DEVICE_DIR", "/dev/disk/by-path", check.path, "where the hosts' udev links iSCSI devices by path"),
    Key("CONF_DIR", "/etc/tgt/conf.d/one-iscsi", check.path,
        "directory of the per-target tgt config files on the target server"),
    Key("LOCK_FILE", "/run/lock/one-iscsi.lock", check.path,
        "lock file on the target server that serialises target creation"),
    Key("LOCK_TIMEOUT", "60", _seconds, "seconds to wait for LOCK_FILE"),
    Key("TIMEOUT", "60", _seconds, "seconds any one remote or local command may take"),
    Key("CONNECT_TIMEOUT", "10", _seconds, "seconds ssh may take to reach a host and get its greeting "
        "(ssh's ConnectTimeout; at most TIMEOUT)"),
    Key("COPY_TIMEOUT", "3600", _seconds, "seconds an image copy may take"),
    Key("DEVICE_TIMEOUT", "30", _seconds, "seconds to wait for the device after an iSCSI login"),
    Key("SUDO", "sudo", _argv, "prefix for privileged commands (empty: none)"),
    Key("SSH", "ssh", _command, "ssh command used to reach other hosts"),
    Key("COPY_VIA", "ssh", _copy_via,
        "how image data reaches the target server: ssh (over the action's ssh connection), iscsi (written from "
        "here by qemu-img through the target's own portal, which must be reachable from here) or auto (iscsi "
        "when the portal answers, else ssh)", template=True),
    Key("COPY_PORTAL", "", _copy_portal,
        "HOST[:PORT] of the target server's portal as this machine reaches it, for COPY_VIA "
        "(empty: HOST and PORTAL_PORT)", template=True),
    Key("COPY_SSH_OPTIONS", "-o Ciphers=^aes128-gcm@openssh.com,aes256-gcm@openssh.com", _argv,
        "more ssh options for image data (default: AES-GCM first, the fastest cipher with AES-NI)"),
    *(Key(key, program, _command, f"command line for {program}") for key, program in TOOL_KEYS.items()),
)

DEFAULTS = {key.name: key.default for key in KEYS}
# What each key means, for --help, the man page and the sample iscsi.conf.
DESCRIPTIONS = {key.name: key.help for key in KEYS}
# The attributes of a datastore's template that override iscsi.conf for its actions.
TEMPLATE_KEYS = tuple(key.name for key in KEYS if key.template)


def _tool(self, program: str) -> Optional[tuple[str, ...]]:
    """The configured argv prefix for a program, or None if it is not a tool."""
    return self.tools.get(program)


def _check(self) -> None:
    """The checks across keys, then the tools by program name."""
    if bool(self.chap_user) != bool(self.chap_password):
        raise ConfigError("CHAP_USER and CHAP_PASSWORD go together: set both or neither")
    tools = {program: getattr(self, key.lower()) for key, program in TOOL_KEYS.items()}
    object.__setattr__(self, "tools", MappingProxyType(tools))


class Setting(NamedTuple):
    """A key's text, variables expanded, and where it came from."""

    text: str
    origin: str


def _from_values(cls, values: Mapping[str, str], origins: Mapping[str, str] = MappingProxyType({}),
                 warnings: Sequence[str] = ()):
    """The Config of the text of every key; origins says where each came
    from, warnings what was amiss in the sources (unknown keys)."""
    settings = {key.name: Setting(values[key.name], origins.get(key.name, "default")) for key in KEYS}
    cfg = cls(**{key.attribute: key.value(*settings[key.name]) for key in KEYS})
    object.__setattr__(cfg, "settings", MappingProxyType(settings))
    object.__setattr__(cfg, "warnings", tuple(warnings))
    return cfg


# Immutable; one attribute per key (the key in lower case, of its parser's
# type), `tools`, the argv prefix of each program, and from `load` the
# `settings` (each key's text and origin) and `warnings`.
Config = make_dataclass(
    "Config",
    [(key.attribute, key.parse.__annotations__["return"], field(repr=not key.secret)) for key in KEYS]
    + [("tools", "Mapping[str, tuple[str, ...]]", field(init=False, repr=False, compare=False)),
       ("settings", "Mapping[str, Setting]", field(init=False, repr=False, compare=False, default_factory=dict)),
       ("warnings", "tuple[str, ...]", field(init=False, repr=False, compare=False, default=()))],
    frozen=True,
    namespace={"__module__": __name__, "__doc__": "The configuration of one invocation.",
               "__post_init__": _check, "tool": _tool, "from_values": classmethod(_from_values)},
)


def load(
    conf_file: Optional[str] = None,
    template: Optional[Mapping[str, str]] = None,
    overrides: Optional[Mapping[str, Optional[str]]] = None,
    env: Optional[Mapping[str, str]] = None,
) -> Config:
    """Merge every source of configuration, lowest precedence first. template
    may be a whole datastore template: only TEMPLATE_KEYS set in it count."""
    env = os.environ if env is None else env
    values = {key.name: _expand(key.default, env) for key in KEYS}
    origins: dict[str, str] = {}
    warnings: list[str] = []

    def merge(given: Mapping[str, str], origin: Callable[[str], str]) -> None:
        values.update(given)
        origins.update({key: origin(key) for key in given})

    conf_file = conf_file or env.get(CONF_ENV)
    if conf_file:
        lines: dict[str, int] = {}
        uses: dict[str, set[str]] = {}
        given = read_conf_file(conf_file, env, lines, uses)
        merge(_known(given), lambda key: f"{conf_file}:{lines[key]}")
        warnings = [f"{conf_file}:{lines[name]}: {_unknown_key(name)}"
                    for name in sorted(_unused(given, uses), key=lines.get)]
    merge({key: value for key, value in (template or {}).items() if key in TEMPLATE_KEYS and value},
          lambda key: "the datastore template")
    merge({key: env[ENV_PREFIX + key] for key in DEFAULTS if ENV_PREFIX + key in env},
          lambda key: f"environment {ENV_PREFIX}{key}")
    merge({key: value for key, value in (overrides or {}).items() if value is not None},
          lambda key: "the command line")
    try:
        return Config.from_values(values, origins, warnings)
    except ConfigError as err:
        if not warnings:
            raise
        # the misspelt key is often the cause (CHAP_PASWORD: "CHAP_USER and CHAP_PASSWORD go together")
        raise ConfigError(f"{err}; {'; '.join(warnings)}") from None


def _expand(text: str, env: Mapping[str, str]) -> str:
    """text with its $VAR and ${VAR} replaced, as in iscsi.conf."""
    return _VARIABLE.sub(lambda variable: _lookup(variable.group(1) or variable.group(2), {}, env), text)


def _known(values: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in values.items() if key in DEFAULTS}


def _unused(values: Mapping[str, str], uses: Mapping[str, set[str]]) -> list[str]:
    """The names values sets that are no key and no variable the value of a
    key expands, directly or through other variables."""
    needed: set[str] = set()
    todo = [key for key in values if key in DEFAULTS]
    while todo:
        for name in uses.get(todo.pop(), set()) - needed:
            needed.add(name)
            todo.append(name)
    return [name for name in values if name not in DEFAULTS and name not in needed]


def _unknown_key(name: str) -> str:
    import difflib  # only when a key is unknown: start-up stays fast

    close = difflib.get_close_matches(name.upper(), DEFAULTS, n=1)
    return f"unknown key {name}" + (f" (did you mean {close[0]}?)" if close else "")


def read_conf_file(path: str, env: Mapping[str, str], lines: Optional[dict[str, int]] = None,
                   uses: Optional[dict[str, set[str]]] = None) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as conf:
            text = conf.read()
    except OSError as err:
        raise ConfigError(f"cannot read configuration {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"configuration {path} is not UTF-8 text") from None
    return parse_shell_conf(text, path, env, lines, uses)


_ASSIGNMENT = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def hostname() -> str:
    return os.uname().nodename  # what socket.gethostname() gives, without loading socket


def parse_shell_conf(text: str, origin: str, env: Mapping[str, str], lines: Optional[dict[str, int]] = None,
                     uses: Optional[dict[str, set[str]]] = None) -> dict[str, str]:
    """Read `KEY=VALUE` lines in shell syntax: comments, quotes, backslashes,
    `$VAR` and `${VAR}` (expanded outside single quotes, as the shell does).
    lines, if given, gets the line number of each key; uses, the names of
    the variables its value expands."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ASSIGNMENT.fullmatch(stripped)
        if not match:
            raise ConfigError(f"{origin}:{number}: expected KEY=VALUE, got {stripped!r}")
        key, raw = match.groups()
        expanded: set[str] = set()

        def lookup(name: str) -> str:
            expanded.add(name)
            return _lookup(name, values, env)

        try:
            values[key] = _shell_word(raw, lookup)
            if lines is not None:
                lines[key] = number
            if uses is not None:
                uses[key] = expanded
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


def sample_conf() -> str:
    """The sample iscsi.conf: every key with its help; the original driver's
    keys set to their defaults, the others commented out."""
    import textwrap

    def comment(text: str) -> str:
        return textwrap.fill(text, 78, initial_indent="# ", subsequent_indent="# ",
                             break_long_words=False, break_on_hyphens=False)

    blocks = [
        comment("one-iscsi configuration for the iSCSI datastore and transfer drivers. Shell syntax: "
                "KEY=VALUE lines, comments, quotes, $HOSTNAME and ${VAR} (not expanded in single quotes). "
                "Commented-out keys show their built-in defaults.") + "\n"
        + comment(f"A datastore's template may set {', '.join(TEMPLATE_KEYS)}; they override this file "
                  f"for that datastore's actions. Environment variables {ENV_PREFIX}<KEY> override both.")
        + "\n" + comment("Generated from the keys declared in oneiscsi/config.py (make conf)."),
    ]
    for key in KEYS:
        value = "" if key.secret else _shell_text(key.default)
        blocks.append(f"{comment(key.help)}\n{'' if key.active else '#'}{key.name}={value}")
    return "\n\n".join(blocks) + "\n"


def _shell_text(text: str) -> str:
    """text as a shell word that keeps its $VARIABLEs."""
    if re.fullmatch(r"[\w./:@%+,=-]*", text):
        return text
    return '"' + re.sub(r'(["\\`])', r"\\\1", text) + '"'


if __name__ == "__main__":
    import sys

    with open(sys.argv[1] if len(sys.argv) > 1 else "remotes/datastore/iscsi/iscsi.conf", "w",
              encoding="utf-8") as sample:
        sample.write(sample_conf())
