"""`one-iscsi tm ...`: the transfer actions, as OpenNebula calls them."""

import sys
from typing import Annotated, List, Optional, Sequence

import typer

from .common import hosts, load_config

app = typer.Typer(help="Transfer actions on the hypervisor hosts: ln, clone, mv, mvds, cpds, delete, resize, "
                       "and the live migration steps.", no_args_is_help=True)

Extra = Annotated[Optional[List[str]], typer.Argument(
    metavar="[VMID DSID]...", help="Further arguments from OpenNebula (ignored).")]
HostPathArgument = Annotated[str, typer.Argument(metavar="HOST:PATH", help="Host and path of the VM disk.")]
IqnArgument = Annotated[str, typer.Argument(metavar="IQN", help="Target name (the image's SOURCE).")]
HostArgument = Annotated[str, typer.Argument(metavar="HOST")]


def _run(ctx: typer.Context, action: str, work, ahead: Sequence[str] = ()) -> None:
    """Run a transfer action with the configuration and a Runner per host,
    connecting at once to the hosts in ahead; log its note."""
    from .. import opennebula

    cfg = load_config(ctx)
    opennebula.log_info(action, work(cfg, hosts(ctx, cfg, ahead)))


def _host(where: str) -> str:
    """The host of a HOST:PATH argument."""
    from .. import opennebula

    return opennebula.host_path(where).host


@app.command("ln")
def ln(ctx: typer.Context, iqn: IqnArgument, dst: HostPathArgument, extra: Extra = None) -> None:
    """Log the host in to the target and link the device as the VM's disk."""
    from .. import opennebula, tm

    _run(ctx, "ln", lambda cfg, on: tm.ln(iqn, opennebula.host_path(dst), cfg, on), ahead=[_host(dst)])


@app.command("clone")
def clone(ctx: typer.Context, src: IqnArgument, dst: HostPathArgument, extra: Extra = None) -> None:
    """A non-persistent disk: copy the image into a volume and target of the
    VM's own on the target server, log the host in and link it. Refused for
    OpenNebula 3.x unless NON_PERSISTENT=yes."""
    from .. import opennebula, tm

    def work(cfg, on):
        allowed = cfg.non_persistent == "yes" or (
            cfg.non_persistent == "" and opennebula.version_of(cfg.opennebula_version, cfg.one_location) >= (4,))
        return tm.clone(src, opennebula.host_path(dst), cfg, on, allowed)

    _run(ctx, "clone", work)


@app.command("mvds")
def mvds(ctx: typer.Context, src: HostPathArgument, iqn: IqnArgument, extra: Extra = None) -> None:
    """Log the host out of the disk's target; for a save-as (IQN another
    image), copy the disk's data into that image on the target server first."""
    from .. import opennebula, tm

    _run(ctx, "mvds", lambda cfg, on: tm.mvds(opennebula.host_path(src), iqn, cfg, on), ahead=[_host(src)])


@app.command("cpds")
def cpds(ctx: typer.Context, src: HostPathArgument, iqn: IqnArgument,
         snapshot: Annotated[str, typer.Argument(metavar="SNAP_ID", help="-1: the disk itself.")] = "-1",
         extra: Extra = None) -> None:
    """Copy the disk's data into the image IQN (save-as), on the target server."""
    from .. import opennebula, tm

    _run(ctx, "cpds", lambda cfg, on: tm.cpds(opennebula.host_path(src), iqn, snapshot, cfg, on), ahead=[_host(src)])


@app.command("mv")
def mv(ctx: typer.Context, src: HostPathArgument, dst: HostPathArgument, extra: Extra = None) -> None:
    """Move a disk (log in there, log out here) or a VM directory between hosts."""
    from .. import opennebula, tm

    _run(ctx, "mv", lambda cfg, on: tm.mv(opennebula.host_path(src), opennebula.host_path(dst), cfg, on),
         ahead=[_host(src), _host(dst)] if src != dst else [])  # both connections at once


@app.command("delete")
def delete(ctx: typer.Context, dst: HostPathArgument, extra: Extra = None) -> None:
    """Log out of a disk's target and remove its link (and a VM's private
    copy of a non-persistent image), or remove a VM directory."""
    from .. import opennebula, tm

    _run(ctx, "delete", lambda cfg, on: tm.delete(opennebula.host_path(dst), cfg, on), ahead=[_host(dst)])


@app.command("resize")
def resize(ctx: typer.Context, dst: HostPathArgument,
           size: Annotated[str, typer.Argument(metavar="SIZE_MB", help="The disk's new size in MB.")],
           extra: Extra = None) -> None:
    """Grow the disk's volume, make tgtd report the new size, rescan on the host."""
    from .. import opennebula, tm

    _run(ctx, "resize", lambda cfg, on: tm.resize(opennebula.host_path(dst), size, cfg, on), ahead=[_host(dst)])


def _migration(ctx: typer.Context, step: str, src: str, dst: str, vm_dir: str) -> None:
    from .. import opennebula, tm
    from ..errors import InvalidInput

    if sys.stdin.isatty():
        raise InvalidInput("no VM XML: it comes base64 on stdin")
    disks = opennebula.vm_disks(sys.stdin.read())
    _run(ctx, f"{step}migrate", lambda cfg, on: tm.migrate(step, src, dst, vm_dir, disks, cfg, on),
         ahead=tm.migration_hosts(step, src, dst, disks))


MigrationExtra = Annotated[Optional[List[str]], typer.Argument(
    metavar="VMID DSID [TM_MAD]", help="Further arguments from OpenNebula (ignored).")]


@app.command("premigrate")
def premigrate(ctx: typer.Context, src: HostArgument, dst: HostArgument,
               vm_dir: Annotated[str, typer.Argument(metavar="DIR")], extra: MigrationExtra = None) -> None:
    """Live migration, before: log DST in to the VM's iSCSI disks and link them
    (VM XML base64 on stdin)."""
    _migration(ctx, "pre", src, dst, vm_dir)


@app.command("postmigrate")
def postmigrate(ctx: typer.Context, src: HostArgument, dst: HostArgument,
                vm_dir: Annotated[str, typer.Argument(metavar="DIR")], extra: MigrationExtra = None) -> None:
    """Live migration, after: log SRC out of the VM's iSCSI disks."""
    _migration(ctx, "post", src, dst, vm_dir)


@app.command("failmigrate")
def failmigrate(ctx: typer.Context, src: HostArgument, dst: HostArgument,
                vm_dir: Annotated[str, typer.Argument(metavar="DIR")], extra: MigrationExtra = None) -> None:
    """Live migration failed: log DST out again, the disks linked for SRC."""
    _migration(ctx, "fail", src, dst, vm_dir)


@app.command("unsupported", hidden=True)
def unsupported(action: Annotated[str, typer.Argument(metavar="ACTION")],
                arguments: Annotated[Optional[List[str]], typer.Argument(metavar="ARGS")] = None) -> None:
    """A transfer action the iscsi driver does not offer (disk snapshots, backups)."""
    from .. import opennebula

    opennebula.unsupported("transfer", action)
