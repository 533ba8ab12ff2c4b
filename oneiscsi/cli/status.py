"""`one-iscsi status` and `one-iscsi gc`: what the target server holds, and its clean-up.

Two top-level commands, not a group: the root app registers the functions.
"""

import sys
from collections import Counter
from typing import Annotated

import typer

from .common import JsonOption, info, load_config, print_json, print_table, target_server

app = typer.Typer(help="What the target server holds, and the removal of its orphans.", no_args_is_help=True)


def status(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show every volume, target and saved target file of the target server,
    joined: a row per volume or target with its size (MiB), sessions, state
    (ok, orphan, incomplete, foreign) and what is amiss."""
    from .. import inventory

    cfg = load_config(ctx)
    entries = inventory.status(cfg, target_server(ctx, cfg=cfg))
    if json:
        print_json([entry.as_dict() for entry in entries])
        return
    print_table([_row(entry) for entry in entries], ["NAME", "TID", "MIB", "SESSIONS", "STATE", "FLAGS"])
    states = Counter(entry.state for entry in entries)
    info(", ".join(f"{count} {state}" for state, count in states.items()) or "no volumes, targets or saved files")
    if states[inventory.ORPHAN]:
        info("`one-iscsi gc` shows what it would remove")
    if any(entry.ours and inventory.NOT_IN_TGTD in entry.flags for entry in entries):
        info(f"`one-iscsi target restore` brings back the saved targets {'LIO' if cfg.target == 'lio' else 'tgtd'} "
             "lacks")
    if any(inventory.STALE_TID in entry.flags or inventory.NO_TID in entry.flags for entry in entries):
        info("`one-iscsi target restore` records in the saved files the TIDs their targets have")


def _row(entry) -> list:
    target = entry.target
    tid = target.tid if target else None  # None: no target, or LIO's (no TIDs)
    return [entry.name, "-" if tid is None else tid, "-" if entry.size_mib is None else entry.size_mib,
            len(target.sessions) if target else 0, entry.state, ",".join(entry.flags) or "-"]


def gc(ctx: typer.Context,
       yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove them; without it, only show them.")] = False,
       json: JsonOption = False) -> int:
    """Remove the orphans of the target server that a killed action leaves:
    a volume without target and saved file, a saved file without target and
    data, a target without volume and data. Without --yes, print what would
    be removed. Skips a target in use and an image another one-iscsi works on."""
    from .. import inventory

    cfg = inventory.gc_config(load_config(ctx))
    outcomes = inventory.gc(cfg, target_server(ctx, cfg=cfg), remove=yes)
    if json:
        print_json([outcome.as_dict() for outcome in outcomes])
    else:
        for outcome in outcomes:
            _report(outcome)
    actions = Counter(outcome.action for outcome in outcomes)
    said = {inventory.WOULD_REMOVE: "to remove"}
    info(", ".join(f"{count} {said.get(action, action)}" for action, count in actions.items()) or "nothing to remove")
    if actions[inventory.WOULD_REMOVE] and not yes:
        info("run `one-iscsi gc --yes` to remove them")
    return 1 if actions[inventory.FAILED] else 0


def _report(outcome) -> None:
    from ..inventory import FAILED, SKIPPED, WHY_ORPHAN

    if outcome.action == SKIPPED:
        info(f"skipped {outcome.what}: {outcome.why}")
    elif outcome.action == FAILED:
        print(f"not removed: {outcome.what}: {outcome.why}", file=sys.stderr)
    else:
        print(f"{outcome.action} {outcome.what} ({WHY_ORPHAN[outcome.entry.orphan]})")


app.command("status")(status)
app.command("gc")(gc)
