"""What every command group shares: global options, configuration, output."""

import sys
from dataclasses import dataclass
from typing import Annotated, Any, Optional, Sequence

import typer

from .. import completion
from ..units import MIB


@dataclass(frozen=True)
class Globals:
    conf_file: Optional[str] = None
    dry_run: bool = False
    host: Optional[str] = None  # --host: HOST for this run


# --quiet: a setting of the whole run, read where notes are printed
QUIET = {"on": False}


def globals_of(ctx: typer.Context) -> Globals:
    return ctx.find_root().obj or Globals()


def load_config(ctx: typer.Context, template: Optional[dict] = None, **overrides: Optional[str]):
    from .. import config  # domain modules load when a command runs: start-up stays fast

    given = globals_of(ctx)
    overrides = {"host": given.host, **{k: v for k, v in overrides.items() if v is not None}}
    cfg = config.load(given.conf_file, template=template, overrides={k.upper(): v for k, v in overrides.items()})
    # Even with --quiet: a misspelt key is a setting the admin believes in and that is not applied
    # (INITIATOR leaves new targets open to ALL). On stderr: stdout stays what scripts and OpenNebula read.
    for warning in cfg.warnings:
        print(f"one-iscsi: warning: {warning}", file=sys.stderr)
    return cfg


def target_server(ctx: typer.Context, cfg=None, ahead: bool = False):
    """A Runner for the target server, HOST of the configuration (--host),
    honouring --dry-run; with ahead, already connecting (a driver action
    that surely needs it)."""
    cfg = cfg or load_config(ctx)
    runner = runner_on(ctx, cfg.host, cfg)
    return _connecting(ctx, runner) if ahead else runner


def _connecting(ctx: typer.Context, runner):
    """runner, its connection started now and ended with the command if unused."""
    ctx.call_on_close(runner.close)
    return runner.connect_ahead()


def runner_on(ctx: typer.Context, host: str, cfg=None):
    """A Runner for any host (a hypervisor host), honouring --dry-run."""
    from ..run import Runner

    return Runner(host, cfg or load_config(ctx), dry_run=globals_of(ctx).dry_run)


def local_runner(cfg):
    """A Runner for this machine's own reads (the image to copy): never dry."""
    from ..run import Runner

    return Runner("localhost", cfg)


def hosts(ctx: typer.Context, cfg, ahead: Sequence[str] = ()):
    """Makes the Runner of a hypervisor host by name, for the transfer
    actions: one per host, those named in ahead already connecting."""
    runners = {}

    def runner(host: str):
        if host not in runners:
            runners[host] = runner_on(ctx, host, cfg)
        return runners[host]

    for host in dict.fromkeys(ahead):
        _connecting(ctx, runner(host))
    return runner


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


def print_json(data: Any) -> None:
    import json

    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    from tabulate import tabulate  # costs ~100 ms: only when a table is printed

    print(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


IqnArgument = Annotated[str, typer.Argument(metavar="IQN", autocompletion=completion.iqns, help="Target name.")]
TidArgument = Annotated[int, typer.Argument(metavar="TID", min=1, autocompletion=completion.tids,
                                            help="Target ID.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
