"""`one-iscsi lun ...`: logical units of targets."""

from typing import Annotated, Optional

import typer

from .. import completion
from ..values import MAX_LUN
from .common import JsonOption, print_json, print_table
from .target import ForceOption, TargetArgument, mib, notify, server_of

app = typer.Typer(help="Attach backing stores to targets as logical units.", no_args_is_help=True)

LunOption = Annotated[int, typer.Option("--lun", "-l", min=1, max=MAX_LUN, help="Logical unit number.")]


@app.command("bind")
def bind(ctx: typer.Context, target: TargetArgument,
         device: Annotated[str, typer.Argument(metavar="DEV", help="Backing store: block device or file.")],
         lun: LunOption = 1,
         force: Annotated[bool, typer.Option(
             "--force", "-f", help="Also a target one-iscsi did not make (changed in tgtd only), or a backing "
                                   "store another target has.")] = False) -> None:
    """Add a backing store to a target as a LUN (tgtadm_logicalunit_new), in
    tgtd and the target's saved file."""
    with server_of(ctx, lock=True) as server:
        notify(server.add_lun(target, device, lun, force))


@app.command("unbind")
def unbind(ctx: typer.Context, target: TargetArgument, lun: LunOption = 1, force: ForceOption = False) -> None:
    """Remove a LUN from a target, in tgtd and its saved file; refused while
    initiators are logged in, unless --force."""
    with server_of(ctx, lock=True) as server:
        notify(server.remove_lun(target, lun, force))


@app.command("list")
def list_luns(ctx: typer.Context,
              target: Annotated[Optional[str], typer.Argument(
                  metavar="[TID|IQN]", autocompletion=completion.tid_or_iqn,
                  help="Only this target (default: every one).")] = None,
              json: JsonOption = False) -> None:
    """List the LUNs of every target, or of one: backing store and size in MiB."""
    with server_of(ctx) as server:
        targets = server.select(target)
    rows = [{"tid": shown.tid, "iqn": shown.iqn, "lun": lun.lun, "backing_store": lun.backing_store,
             "size_mib": lun.size_mib} for shown in targets for lun in shown.luns]
    if json:
        print_json(rows)
        return
    print_table([[row["tid"] or "-", row["iqn"], row["lun"], row["backing_store"], mib(row["size_mib"])]
                 for row in rows], ["TID", "IQN", "LUN", "BACKING STORE", "SIZE"])
