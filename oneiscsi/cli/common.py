"""What every command group shares: global options, configuration, output."""

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Iterator, Optional, Sequence

import typer

from .. import completion


@dataclass(frozen=True)
class Globals:
    conf_file: Optional[str] = None
    dry_run: bool = False
    quiet: bool = False


# --quiet: a setting of the whole run, read where notes are printed
QUIET = {"on": False}


def globals_of(ctx: typer.Context) -> Globals:
    return ctx.find_root().obj or Globals()


def load_config(ctx: typer.Context, template: Optional[dict] = None, **overrides: Optional[str]):
    from .. import config  # domain modules load when a command runs: start-up stays fast

    return config.load(globals_of(ctx).conf_file, template=template,
                       overrides={k.upper(): v for k, v in overrides.items()})


@contextmanager
def driver_action(action: str) -> Iterator[None]:
    """Report a failure of an OpenNebula driver action the way OpenNebula reads it."""
    from ..errors import OneIscsiError
    from ..opennebula import error_message

    try:
        yield
    except OneIscsiError as err:
        error_message(action, str(err))
        raise typer.Exit(err.exit_code) from None
    except (OSError, ValueError) as err:  # e.g. the image file failing while it is read
        error_message(action, f"{type(err).__name__}: {err}")
        raise typer.Exit(1) from None


def runner(ctx: typer.Context, host: Optional[str]):
    """A Runner for host, or for the configured HOST when host is None."""
    from ..run import Runner

    cfg = load_config(ctx, host=host)
    return Runner(cfg.host, cfg, dry_run=globals_of(ctx).dry_run)


def runner_on(ctx: typer.Context, host: str):
    """A Runner for a hypervisor host named on the command line."""
    from ..run import Runner

    return Runner(host, load_config(ctx), dry_run=globals_of(ctx).dry_run)


def info(message: str) -> None:
    """A note for people, on stderr, so stdout stays what scripts read."""
    if not QUIET["on"]:
        print(message, file=sys.stderr)


class Progress:
    """Bytes done, rate and time left of a copy, on one line of a terminal."""

    def __init__(self, total: int, stream=None):
        import time

        self.clock = time.monotonic
        self.total, self.done, self.stream = total, 0, stream or sys.stderr
        self.started = self.shown = self.clock()

    @classmethod
    def for_terminal(cls, total: int) -> Optional["Progress"]:
        """Only for people: not when stderr is not a terminal (OpenNebula), not with --quiet."""
        return cls(total) if sys.stderr.isatty() and not QUIET["on"] else None

    def __call__(self, count: int) -> None:
        self.done += count
        now = self.clock()
        if now - self.shown < 0.5 and self.done < self.total:
            return
        self.shown = now
        rate = self.done / max(now - self.started, 1e-6)
        left = (self.total - self.done) / rate if rate else 0
        self.stream.write(f"\r{self.done / MIB:10.1f} / {self.total / MIB:.1f} MiB  {rate / MIB:7.1f} MiB/s  "
                          f"{int(left) // 60}:{int(left) % 60:02d} left ")
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


MIB = 1024 * 1024


def print_json(data: Any) -> None:
    import json

    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    from tabulate import tabulate  # costs ~100 ms: only when a table is printed

    print(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


HostOption = Annotated[
    Optional[str],
    typer.Option("--host", "-H", autocompletion=completion.hosts,
                 help="Target server to run on (default: HOST from the configuration)."),
]
IqnArgument = Annotated[str, typer.Argument(metavar="IQN", autocompletion=completion.iqns, help="Target name.")]
TidArgument = Annotated[int, typer.Argument(metavar="TID", min=1, autocompletion=completion.tids,
                                            help="Target ID.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
