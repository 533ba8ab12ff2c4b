"""`one-iscsi tm ...`: the transfer actions, as OpenNebula calls them."""

from typing import Annotated, List, Optional

import typer

from .common import hosts, load_config

app = typer.Typer(help="Transfer actions on the hypervisor hosts: ln, clone, mvds, mv, delete.",
                  no_args_is_help=True)

Extra = Annotated[Optional[List[str]], typer.Argument(
    metavar="[VMID DSID]...", help="Further arguments from OpenNebula (ignored).")]
HostPathArgument = Annotated[str, typer.Argument(metavar="HOST:PATH", help="Host and path of the VM disk.")]
IqnArgument = Annotated[str, typer.Argument(metavar="IQN", help="Target name (the image's SOURCE).")]


def _run(ctx: typer.Context, action: str, work) -> None:
    """Run a transfer action with the configuration and a Runner per host; log its note."""
    from .. import opennebula

    cfg = load_config(ctx)
    opennebula.log_info(action, work(cfg, hosts(ctx, cfg)))


@app.command("ln")
def ln(ctx: typer.Context, iqn: IqnArgument, dst: HostPathArgument, extra: Extra = None) -> None:
    """Log the host in to the target and link the device as the VM's disk."""
    from .. import opennebula, tm

    _run(ctx, "ln", lambda cfg, on: tm.ln(iqn, opennebula.host_path(dst), cfg, on))


@app.command("clone")
def clone(ctx: typer.Context, src: Annotated[str, typer.Argument(metavar="SRC")],
          dst: HostPathArgument, extra: Extra = None) -> None:
    """Not supported: iSCSI images must be persistent."""
    from .. import tm

    tm.clone()


@app.command("mvds")
def mvds(ctx: typer.Context, src: HostPathArgument, iqn: IqnArgument, extra: Extra = None) -> None:
    """Log the host out of the target (the disk goes back to the datastore)."""
    from .. import opennebula, tm

    _run(ctx, "mvds", lambda cfg, on: tm.mvds(opennebula.host_path(src), iqn, cfg, on))


@app.command("mv")
def mv(ctx: typer.Context, src: HostPathArgument, dst: HostPathArgument, extra: Extra = None) -> None:
    """Move a disk (log out here, log in there) or a VM directory between hosts."""
    from .. import opennebula, tm

    _run(ctx, "mv", lambda cfg, on: tm.mv(opennebula.host_path(src), opennebula.host_path(dst), cfg, on))


@app.command("delete")
def delete(ctx: typer.Context, dst: HostPathArgument, extra: Extra = None) -> None:
    """Log out of a disk's target and remove its link, or remove a VM directory."""
    from .. import opennebula, tm

    _run(ctx, "delete", lambda cfg, on: tm.delete(opennebula.host_path(dst), cfg, on))
