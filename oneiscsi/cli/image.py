"""`one-iscsi image ...`: the datastore actions, as OpenNebula calls them."""

from typing import Annotated

import typer

from .common import HostOption, Progress, driver_action, globals_of, info, load_config

app = typer.Typer(help="Datastore actions: register (cp, mkfs), remove (rm), size (stat), monitor.",
                  no_args_is_help=True)

DataArgument = Annotated[str, typer.Argument(metavar="DRV_ACTION",
                                             help="Base64 DS_DRIVER_ACTION_DATA XML from OpenNebula.")]
IdArgument = Annotated[str, typer.Argument(metavar="IMAGE_ID", help="Image ID.")]


def _prepare(ctx: typer.Context, data: str, image_id: str):
    from .. import opennebula

    act = opennebula.decode(data, image_id)
    return act, load_config(ctx, template=act.config_overrides())


@app.command("cp")
def cp(ctx: typer.Context, data: DataArgument, image_id: IdArgument) -> None:
    """Create a volume and target and copy the image into it; prints `IQN SIZE_MB`."""
    from .. import datastore

    with driver_action("cp"):
        act, cfg = _prepare(ctx, data, image_id)
        print(datastore.cp(act, cfg, dry_run=globals_of(ctx).dry_run, progress_for=Progress.for_terminal))


@app.command("mkfs")
def mkfs(ctx: typer.Context, data: DataArgument, image_id: IdArgument) -> None:
    """Create a volume and target with an empty filesystem; prints `IQN SIZE_MB`."""
    from .. import datastore

    with driver_action("mkfs"):
        act, cfg = _prepare(ctx, data, image_id)
        print(datastore.mkfs(act, cfg, dry_run=globals_of(ctx).dry_run))


@app.command("rm")
def rm(ctx: typer.Context, data: DataArgument, image_id: IdArgument) -> None:
    """Delete the image's target and volume; already gone is fine."""
    from .. import datastore, opennebula

    with driver_action("rm"):
        act, cfg = _prepare(ctx, data, image_id)
        for line in datastore.rm(act, cfg, dry_run=globals_of(ctx).dry_run):
            opennebula.log_info("rm", line)


@app.command("stat")
def stat(ctx: typer.Context, data: DataArgument, image_id: IdArgument) -> None:
    """Print the size in MB of the image PATH (local file or URL)."""
    from .. import datastore

    with driver_action("stat"):
        act, cfg = _prepare(ctx, data, image_id)
        print(datastore.stat(act, cfg))


@app.command("monitor")
def monitor(ctx: typer.Context, data: DataArgument, ds_id: Annotated[str, typer.Argument(
        metavar="DS_ID", help="Datastore ID.")] = "0") -> None:
    """Print USED_MB, TOTAL_MB and FREE_MB of the volume group or pool directory."""
    from .. import datastore

    with driver_action("monitor"):
        _, cfg = _prepare(ctx, data, ds_id)
        print(datastore.monitor(cfg))


@app.command("copy")
def copy(ctx: typer.Context,
         path: Annotated[str, typer.Argument(metavar="SRC", help="Image: local raw or qcow2 file, or http(s) URL.")],
         device: Annotated[str, typer.Argument(metavar="DEV", help="Existing device or file on the target server.")],
         host: HostOption = None) -> None:
    """Write an image onto an existing device of the target server (by hand:
    restore a volume, re-image a disk). Zero blocks are not sent over the
    network, but written there, so nothing of the old content survives."""
    from .. import datastore

    size = datastore.copy(path, device, load_config(ctx, host=host), dry_run=globals_of(ctx).dry_run,
                          progress_for=Progress.for_terminal)
    info(f"wrote {size} bytes to {device}")
