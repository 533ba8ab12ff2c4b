"""The man page, generated from the command tree and the configuration keys:
`python -m oneiscsi.manpage man/one-iscsi.1` (`make man`)."""
import sys
from pathlib import Path

import typer

from . import __version__, config

DESCRIPTION = """\
one-iscsi is the iSCSI datastore driver of OpenNebula as one command-line tool.
It keeps VM disk images as volumes (LVM logical volumes, or sparse files) on a
target server, exports them as iSCSI targets with tgtd, and logs the hypervisor
hosts in with open-iscsi, over ssh, one session per host per step.
Its subcommands mirror the helpers of the original driver
(scripts_common.sh) and its actions; OpenNebula's remotes are one-line
stubs that exec into it.
Commands that work on the target server run on \\fB\\-\\-host\\fR
(default: HOST) directly when that is this machine, otherwise over ssh."""

FILES = [
    ("/var/lib/one/remotes/datastore/iscsi/iscsi.conf",
     "the configuration the OpenNebula remotes pass with \\fB\\-\\-config\\fR"),
    ("/var/lib/one/remotes/datastore/iscsi/, /var/lib/one/remotes/tm/iscsi/",
     "the remote stubs (installed by \\fBone\\-iscsi install\\fR)"),
    ("/etc/tgt/conf.d/one\\-iscsi/<IQN>.conf", "on the target server: one tgt config file per target (CONF_DIR)"),
    ("/etc/tgt/conf.d/one\\-iscsi.conf", "on the target server: includes CONF_DIR into tgt's configuration"),
    ("/run/lock/one\\-iscsi.lock", "on the target server: serialises target creation (LOCK_FILE)"),
]

EXIT_STATUS = [
    ("0", "success"),
    ("1", "a command failed: tgtd not running, unknown target, target in use, host unreachable, ..."),
    ("2", "invalid input (IQN, name, TID, option, driver action data): refused before anything ran"),
    ("3", "an unexpected error (a bug): one line on stderr, the traceback appended to "
          "~/.cache/one\\-iscsi/crash.log"),
    ("130", "interrupted"),
]

EXAMPLES = [
    ("List the targets of the target server tgt1 as a table, then as JSON:",
     ["one\\-iscsi \\-H tgt1 target list", "one\\-iscsi \\-H tgt1 target list \\-\\-json"]),
    ("Create a target, let every initiator in, export a volume as LUN 1:",
     ["one\\-iscsi target new iqn.2012\\-02.org.opennebula:tgt1.vg\\-one.lv\\-one\\-7",
      "one\\-iscsi target bind\\-all 1",
      "one\\-iscsi lun bind 1 /dev/vg\\-one/lv\\-one\\-7"]),
    ("See what a deletion would run, without running it:",
     ["one\\-iscsi \\-\\-dry\\-run target delete iqn.2012\\-02.org.opennebula:tgt1.vg\\-one.lv\\-one\\-7"]),
    ("Bring the saved targets back after tgtd restarted:", ["one\\-iscsi \\-H tgt1 target restore"]),
    ("Let one more network in, and check what a target allows:",
     ["one\\-iscsi \\-H tgt1 target acl add 1 10.0.1.0/24", "one\\-iscsi \\-H tgt1 target acl list 1"]),
    ("What the target server holds, and what killed actions left (removed only with \\-\\-yes):",
     ["one\\-iscsi \\-H tgt1 status", "one\\-iscsi \\-H tgt1 gc"]),
    ("Check the target server and two hosts; see the configuration in effect:",
     ["one\\-iscsi \\-H tgt1 doctor \\-\\-on node1 \\-\\-on node2", "one\\-iscsi config show"]),
    ("Take an IQN apart:", ["one\\-iscsi iqn parse iqn.2012\\-02.org.opennebula:tgt1.vg\\-one.lv\\-one\\-7"]),
    ("Register an image as OpenNebula does (base64 action XML and image ID):",
     ["/var/lib/one/remotes/datastore/iscsi/cp \"$DRV_ACTION\" 7"]),
]


def escape(text: str) -> str:
    """Plain text for roff: backslashes, hyphens, and control characters at line starts."""
    lines = text.replace("\\", "\\e").replace("-", "\\-").splitlines()
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in lines)


def render() -> str:
    from .cli import app

    root = typer.main.get_command(app)
    out = [f'.TH ONE\\-ISCSI 1 "" "one\\-iscsi {__version__}" "User Commands"',
           ".SH NAME", "one\\-iscsi \\- iSCSI datastore driver for OpenNebula",
           ".SH SYNOPSIS", ".B one\\-iscsi",
           "[\\fB\\-H\\fR \\fIHOST\\fR] [\\fB\\-\\-config\\fR \\fIFILE\\fR] [\\fB\\-\\-dry\\-run\\fR] [\\fB\\-\\-quiet\\fR] \\fIGROUP\\fR \\fICOMMAND\\fR "
           "[\\fIOPTIONS\\fR] [\\fIARGUMENTS\\fR]",
           ".SH DESCRIPTION", DESCRIPTION,
           ".SH OPTIONS", *_options(root, indent=False),
           ".SH COMMANDS"]
    for group_name, group in root.commands.items():
        if not hasattr(group, "commands"):  # a command of its own, e.g. install
            out += [f".SS {escape(group_name)}", *_command("", group_name, group)]
            continue
        out += [f".SS {escape(group_name)}", escape(group.help or "")]
        for name, command in _leaves(group_name, group):
            out += _command(*name.rsplit(" ", 1), command)
    out += [".SH CONFIGURATION",
            "Settings come from, lowest precedence first: built\\-in defaults, the \\fIiscsi.conf\\fR file "
            "given by \\fB\\-\\-config\\fR or ONE_ISCSI_CONF (shell KEY=VALUE syntax), the datastore "
            "template, environment variables ONE_ISCSI_\\fIKEY\\fR, command\\-line options.",
            *_keys(),
            ".SS Datastore template attributes",
            "These attributes of an iSCSI datastore override iscsi.conf for its actions: "
            + ", ".join(f"\\fB{escape(key)}\\fR" for key in config.TEMPLATE_KEYS) + ".",
            ".SH FILES", *_pairs(FILES),
            ".SH ENVIRONMENT",
            *_pairs([("ONE_ISCSI_CONF", "the iscsi.conf to read when \\fB\\-\\-config\\fR is not given"),
                     ("ONE_ISCSI_\\fIKEY\\fR", "overrides configuration key \\fIKEY\\fR (see CONFIGURATION)"),
                     ("ONE_ISCSI", "used by the remote stubs: the one\\-iscsi command to exec")]),
            ".SH EXIT STATUS", *_pairs(EXIT_STATUS),
            ".SH EXAMPLES"]
    for text, commands in EXAMPLES:
        out += [".PP", text, ".PP", ".RS", ".nf", *commands, ".fi", ".RE"]
    out += [".SH SEE ALSO", "\\fBtgtadm\\fR(8), \\fBtgt\\-admin\\fR(8), \\fBiscsiadm\\fR(8), \\fBlvcreate\\fR(8)"]
    return "\n".join(out) + "\n"


def _leaves(path: str, group):
    """(`group command`, command) of every command under group, its own groups' (`target acl`) included."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _leaves(f"{path} {name}", command)
        else:
            yield f"{path} {name}", command


def _command(group_name: str, name: str, command) -> list:
    arguments = " ".join(f"\\fI{escape(p.human_readable_name)}\\fR" for p in command.params
                         if p.param_type_name == "argument")
    words = " ".join(escape(word) for word in ("one-iscsi", group_name, name) if word)
    lines = [".TP", f"\\fB{words}\\fR [\\fIOPTIONS\\fR] {arguments}",
             escape(" ".join((command.help or "").split()))]
    for option in _options(command):
        lines.append(option)
    return lines


def _options(command, indent: bool = True) -> list:
    lines = []
    for param in command.params:
        if param.param_type_name != "option" or param.hidden:
            continue
        flags = ", ".join(f"\\fB{escape(flag)}\\fR" for flag in [*param.opts, *param.secondary_opts])
        metavar = param.metavar or ("N" if "integer" in param.type.name else param.name.upper())
        value = "" if param.is_flag else f" \\fI{escape(metavar)}\\fR"
        entry = [".TP", flags + value, escape(param.help or "")]
        lines += [".RS", *entry, ".RE"] if indent else entry
    return lines


def _keys() -> list:
    lines = []
    for key in config.KEYS:
        shown = key.shown or (f'"{key.default}"' if key.default and not key.secret else "empty")
        lines += [".TP", f"\\fB{escape(key.name)}\\fR (default: {escape(shown)})", escape(key.help)]
    return lines


def _pairs(pairs) -> list:
    return [line for name, text in pairs for line in (".TP", f"\\fB{name}\\fR", text)]


def write(path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(render())


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else "man/one-iscsi.1")
