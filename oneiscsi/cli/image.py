"""`one-iscsi image ...`: the datastore actions, as OpenNebula calls them."""

from typing import Annotated

import typer

from .common import HostOption, Progress, info, load_config, local_runner, target_server

app = typer.Typer(help="Datastore actions: register (cp, mkfs), remove (rm), size (stat), monitor.",
                  no_args_is_help=True)

DataArgument = Annotated[str, typer.Argument(metavar="DRV_ACTION",
                                             help="Base64 DS_DRIVER_ACTION_DATA XML from OpenNebula.")]
IdArgument = Annotated[str, typer.Argument(metavar="IMAGE_ID", help="Image ID.")]


def _call(ctx: typer.Context, data: str, image_id: str):
    """The driver action's data, and the configuration with what its datastore's template sets."""
    from .. import opennebula

    act = opennebula.decode(data, image_id)
    return act, load_config(ctx, template=act.datastore)


def _report(action: str, registered) -> None:
    from .. import opennebula

    for note in registered.notes:
        opennebula.log_info(action, note)
    print(opennebula.registered_reply(registered.source, registered.size_mb))


@app.command("cp")
def cp(ctx: typer.Context, data: DataArgument, image_id: IdArgument) -> None:
    """Create a volume and target and copy the image into it; prints `IQN SIZE_MB`."""
    from .. import datastore

    act, cfg = _call(ctx, data, image_id)
    _report("cp", datastore.cp(act.path, act.image_id, cfg, target_server(ctx, cfg=cfg), local_runner(cfg),
                               act.checksums, progress_for=Progress.for_terminal))


@app.command("mkfs")
def mkfs(ctx: typer.Context, data: DataArgument, image_id: IdArgument) -> None:
    """Create a volume and target with an empty filesystem; prints `IQN SIZE_MB`."""
    from .. import datastore

    act, cfg = _call(ctx, data, image_id)
    _report("mkfs", datastore.mkfs(act.image_id, act.size_mb, act.fstype, cfg, target_server(ctx, cfg=cfg)))


@app.command("rm")
def rm(ctx: typer.Context, data: DataArgument, image_id: IdArgument) -> None:
    """Delete the image's target and volume; already gone is fine."""
    from .. import datastore, opennebula

    act, cfg = _call(ctx, data, image_id)
    for note in datastore.rm(act.source, act.image_id, cfg, target_server(ctx, cfg=cfg)):
        opennebula.log_info("rm", note)


@app.command("stat")
def stat(ctx: typer.Context, data: DataArgument, image_id: IdArgument) -> None:
    """Print the size in MB of the image PATH (local file or URL)."""
    from .. import datastore

    act, cfg = _call(ctx, data, image_id)
    print(datastore.stat(act.path, cfg, local_runner(cfg)))


@app.command("monitor")
def monitor(ctx: typer.Context, data: DataArgument, ds_id: Annotated[str, typer.Argument(
        metavar="DS_ID", help="Datastore ID.")] = "0") -> None:
    """Print USED_MB, TOTAL_MB and FREE_MB of the volume group or pool directory."""
    from .. import datastore, opennebula

    _, cfg = _call(ctx, data, ds_id)
    usage = datastore.monitor(cfg, target_server(ctx, cfg=cfg))
    print(opennebula.monitor_reply(usage.used_mb, usage.total_mb, usage.free_mb))


@app.command("copy")
def copy(ctx: typer.Context,
         path: Annotated[str, typer.Argument(metavar="SRC", help="Image: local raw or qcow2 file, or http(s) URL.")],
         device: Annotated[str, typer.Argument(metavar="DEV", help="Existing device or file on the target server.")],
         host: HostOption = None) -> None:
    """Write an image onto an existing device of the target server (by hand:
    restore a volume, re-image a disk). Zero blocks are not sent over the
    network, but written there, so nothing of the old content survives."""
    from .. import datastore

    cfg = load_config(ctx, host=host)
    size = datastore.copy(path, device, cfg, target_server(ctx, cfg=cfg), local_runner(cfg),
                          progress_for=Progress.for_terminal)
    info(f"wrote {size} bytes to {device}")
