"""`one-iscsi lun ...`: logical units of targets."""

from typing import Annotated

import typer

from .common import TidArgument, target_server

app = typer.Typer(help="Attach backing stores to targets as logical units.", no_args_is_help=True)


@app.command("bind")
def bind(ctx: typer.Context,
         tid: TidArgument,
         device: Annotated[str, typer.Argument(metavar="DEV", help="Backing store: block device or file.")],
         lun: Annotated[int, typer.Option("--lun", "-l", min=1, help="Logical unit number.")] = 1) -> None:
    """Add a backing store to a target as a LUN (tgtadm_logicalunit_new)."""
    from ..targets import TargetServer

    with target_server(ctx).session() as session:
        TargetServer(session).bind_lun(tid, device, lun)
