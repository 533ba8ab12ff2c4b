"""The `one-iscsi` command: the root app, global options and error handling.

This is the only place where errors become messages and exit codes: a known
failure (OneIscsiError) exits 1, bad input 2, Ctrl-C 130, and anything
unexpected 3, with one line on stderr and the traceback in a log file. A
driver action (`image cp`, `tm ln` ...) also prints the block OpenNebula reads.

Start-up matters (OpenNebula runs this thousands of times a day): the command
tree typer builds costs time per command, so a run builds only the group its
arguments name, and domain modules load inside the commands.
"""
import importlib
import os
import signal
import sys
from typing import Annotated, Optional, Sequence

import typer

from .. import __version__, completion
from ..errors import Interrupted, OneIscsiError
from .common import QUIET, Globals, globals_of

PROG = "one-iscsi"
# commands of the root app, not groups: name -> (module, function)
ROOT_COMMANDS = {"doctor": ("doctor", "doctor"), "status": ("status", "status"), "gc": ("status", "gc")}
GROUPS = ("target", "lun", "host", "iqn", "image", "tm", "config")
# the global options: the root app reads them, wherever they are on the command line
ROOT_FLAGS = ("--dry-run", "-n", "--quiet", "-q")
ROOT_OPTIONS_WITH_VALUE = ("--config", "-c", "--host", "-H")
# the commands OpenNebula runs: their failures print OpenNebula's ERROR MESSAGE block
DRIVER_ACTIONS = {"image": ("cp", "mkfs", "clone", "rm", "stat", "monitor", "unsupported"),
                  "tm": ("ln", "clone", "mvds", "cpds", "mv", "delete", "resize", "premigrate", "postmigrate",
                         "failmigrate", "unsupported")}
UNEXPECTED = 3
# what oned sends a driver it gives up on, Ctrl-C, a closed terminal: each ends the action like a failure
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def build_app(args: Optional[Sequence[str]] = None) -> typer.Typer:
    """The root app with the group args name, or with every group."""
    root = typer.Typer(
        name=PROG,
        help="iSCSI datastore driver for OpenNebula: tgtd targets, volumes and initiator logins.",
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    root.callback()(root_options)
    root.command("install")(install)
    wanted = _group_named(args) if args is not None and not os.environ.get(completion.COMPLETE_VAR) else None
    if wanted is None:  # a group's run (every driver action) needs none of them
        for name, (module, function) in ROOT_COMMANDS.items():
            root.command(name)(getattr(importlib.import_module(f"{__name__}.{module}"), function))
    for name in [wanted] if wanted else GROUPS:
        root.add_typer(importlib.import_module(f"{__name__}.{name}").app, name=name)
    return root


def _group_named(args: Sequence[str]) -> Optional[str]:
    """The group the command line names, if any (its first word that is not an option)."""
    words = _words(args)
    group = words[0] if words else None
    return group if group in GROUPS else None


def _driver_action(args: Sequence[str]) -> Optional[str]:
    """The driver action the command line names (`cp` of `image cp ...`), if any."""
    words = _words(args)
    if len(words) >= 2 and words[1] in DRIVER_ACTIONS.get(words[0], ()):
        return words[1]
    return None


def hoist_global_options(args: Sequence[str]) -> list[str]:
    """The command line with the global options moved in front, where the
    root app reads them: people put them before the group or after the
    command. Nothing after `--` moves."""
    front, rest = [], []
    words = iter(args)
    for word in words:
        if word == "--":
            rest += [word, *words]
        elif word in ROOT_FLAGS:
            front.append(word)
        elif word in ROOT_OPTIONS_WITH_VALUE:
            front += [word, *([value] if (value := next(words, None)) is not None else [])]
        elif word.startswith(("--config=", "--host=")) or (word[:2] in ("-c", "-H") and len(word) > 2):
            front.append(word)
        else:
            rest.append(word)
    return front + rest


def _words(args: Sequence[str]) -> list[str]:
    """The first two words of the command line that are not root options."""
    words, found = iter(args), []
    for word in words:
        if word in ROOT_OPTIONS_WITH_VALUE and not found:
            next(words, None)
        elif not word.startswith("-"):
            found.append(word)
            if len(found) == 2:
                break
    return found


def __getattr__(name: str):
    if name == "app":  # the whole app, for the man page and completion scripts
        return build_app()
    raise AttributeError(name)


def _version(value: bool) -> None:
    if value:
        print(f"{PROG} {__version__}")
        raise typer.Exit()


def root_options(
    ctx: typer.Context,
    conf_file: Annotated[Optional[str], typer.Option(
        "--config", "-c", metavar="FILE", envvar="ONE_ISCSI_CONF",
        help="iscsi.conf to read (shell KEY=VALUE syntax).")] = None,
    host: Annotated[Optional[str], typer.Option(
        "--host", "-H", metavar="HOST", autocompletion=completion.hosts,
        help="Target server to work on (default: HOST of the configuration).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", "-n", help="Print the commands that would change something instead of running them.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Print only what scripts need: no notes, no progress.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    ctx.obj = Globals(conf_file=conf_file, dry_run=dry_run, host=host)
    QUIET["on"] = quiet


def install(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Option("--prefix", metavar="DIR",
                                        help="OpenNebula's remotes tree.")] = "/var/lib/one/remotes",
    share: Annotated[str, typer.Option("--share", metavar="DIR",
                                       help="Where the completions and the man page go.")] = "/usr/local/share",
    one_version: Annotated[Optional[str], typer.Option(
        "--opennebula-version", metavar="VERSION",
        help="OpenNebula version to print the oned.conf entries for (default: OPENNEBULA_VERSION, else the "
             "installation's).")] = None,
    oned_conf: Annotated[Optional[str], typer.Option(
        "--oned-conf", metavar="FILE", help="Also write the oned.conf entries to FILE.")] = None,
) -> None:
    """Install the remotes into OpenNebula (keeping an existing iscsi.conf),
    the shell completions and the man page, and print the oned.conf entries
    for the OpenNebula version found or told. With --dry-run, list what it
    would do."""
    from .. import install as installer
    from .. import opennebula
    from .common import load_config

    cfg = load_config(ctx, opennebula_version=one_version)
    try:
        entries = installer.oned_conf(opennebula.version_of(cfg.opennebula_version, cfg.one_location))
    except OneIscsiError:
        if oned_conf:
            raise
        entries = ("# oned.conf entries: no OpenNebula version found here; "
                   "see them with --opennebula-version VERSION\n")
    copies = installer.plan(prefix, share)
    if globals_of(ctx).dry_run:
        print("\n".join(copy.describe() for copy in copies))
        print(entries, end="")
        return
    for line in installer.install(copies):
        print(line, file=sys.stderr)
    if oned_conf:
        installer.write_text(oned_conf, entries)
    print(entries, end="")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; return the exit status instead of raising SystemExit."""
    completion.enable_if_asked()
    previous = _stop_on_signals()
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _main(args: list[str]) -> int:
    from typer._click import exceptions as click_errors  # typer vendors click

    args = hoist_global_options(args)
    action = _driver_action(args)
    command = typer.main.get_command(build_app(args))
    try:
        result = command.main(args, prog_name=PROG, standalone_mode=False)
    except OneIscsiError as err:
        return _fail(err, err.exit_code, action)
    except click_errors.NoArgsIsHelpError as err:  # `one-iscsi`, `one-iscsi target`: the help, as it is
        print(err.format_message(), file=sys.stderr)
        return 2
    except click_errors.UsageError as err:
        where = err.ctx.command_path if err.ctx else PROG
        if action:
            return _fail(err.format_message(), 2, action)
        return _fail(f"{err.format_message()} (see '{where} --help')", 2, prefix=where)
    except click_errors.ClickException as err:
        return _fail(err.format_message(), err.exit_code, action)
    except typer.Exit as done:
        return done.exit_code
    except Interrupted as err:
        return _fail(err, err.exit_code, action)
    except (typer.Abort, KeyboardInterrupt):
        return _fail("interrupted", 130, action)
    except BrokenPipeError:
        return 141
    except OSError as err:  # e.g. the image file failing while it is read
        return _fail(f"{type(err).__name__}: {err}", 1, action)
    except Exception as err:  # a bug: one line here, the details in the log
        return _fail(f"unexpected {type(err).__name__}: {err} (details in {_log_traceback(args)})",
                     UNEXPECTED, action)
    return result if isinstance(result, int) else 0


def _stop_on_signals() -> dict:
    """The first stop signal raises Interrupted where the action is, so its
    steps are undone as after any failure; later ones are ignored, so that
    the undo is not itself cut short (every command of it is bounded).
    Returns the handlers it replaced."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    received = []

    def stop(signum, _frame) -> None:
        if not received:
            received.append(signum)
            raise Interrupted(signum)

    return {number: signal.signal(number, stop) for number in STOP_SIGNALS}


def _fail(message, code: int, action: Optional[str] = None, prefix: str = PROG) -> int:
    one_line = " ".join(str(message).splitlines())
    if action:
        from ..opennebula import error_message

        error_message(action, one_line)
    else:
        print(f"{prefix}: error: {one_line}", file=sys.stderr)
    return code


def _log_traceback(args: Sequence[str]) -> str:
    """Append the current exception's traceback to the crash log; its path."""
    import tempfile
    import time
    import traceback
    from pathlib import Path

    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for log in (Path(cache) / PROG / "crash.log", Path(tempfile.gettempdir()) / f"{PROG}-crash.log"):
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as out:
                out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {PROG} {__version__}: "
                          f"{' '.join(_words(args))}\n{traceback.format_exc()}")
            return str(log)
        except OSError:
            continue
    return "nowhere: no writable log directory"
