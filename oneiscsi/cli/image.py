"""`one-iscsi image ...`: the datastore actions, as OpenNebula calls them."""

import sys
from typing import Annotated, List

import typer

from ..units import MIB
from .common import Progress, info, load_config, local_runner, target_server

app = typer.Typer(help="Datastore actions: register (cp, mkfs, clone), remove (rm), size (stat), monitor.",
                  no_args_is_help=True)

CallArguments = Annotated[List[str], typer.Argument(
    metavar="[DRV_ACTION] ID",
    help="Base64 DS_DRIVER_ACTION_DATA XML and the object ID (OpenNebula up to 6.6), or the ID alone with "
         "DS_DRIVER_ACTION_DATA on stdin (6.8 and later).")]


class _Call:
    """A datastore action as OpenNebula called it: its data, the
    configuration with its datastore's template, and the caller's version."""

    def __init__(self, ctx: typer.Context, arguments: List[str]):
        from .. import opennebula

        self.call = opennebula.read_call(arguments, sys.stdin)
        self.act = opennebula.decode(self.call.data, self.call.object_id)
        self.cfg = load_config(ctx, template=self.act.datastore)

    @property
    def version(self) -> tuple:
        """Only for the replies that differ between versions: an action that
        does not need it works without it."""
        from .. import opennebula

        return opennebula.version_of(self.cfg.opennebula_version, self.cfg.one_location, self.call.on_stdin)


def _notes(action: str, registered) -> None:
    from .. import opennebula

    for note in registered.notes:
        opennebula.log_info(action, note)


@app.command("cp")
def cp(ctx: typer.Context, arguments: CallArguments) -> None:
    """Create a volume and target and copy the image into it; prints the
    image's SOURCE (and its size or format, as the OpenNebula version expects)."""
    from .. import opennebula

    call = _Call(ctx, arguments)
    version = call.version
    act, cfg = call.act, call.cfg
    server = target_server(ctx, cfg=cfg, ahead=True)
    from .. import datastore  # while ssh connects

    done = datastore.cp(act.path, act.image_id, cfg, server, local_runner(cfg), act.checksums,
                        progress_for=Progress.for_terminal, keep_qcow2=act.keeps_qcow2)
    _notes("cp", done)
    print(opennebula.cp_reply(version, done.source, done.size_mb, done.format))


@app.command("mkfs")
def mkfs(ctx: typer.Context, arguments: CallArguments) -> None:
    """Create a volume and target with an empty filesystem, or none for a
    save-as image; prints the image's SOURCE (3.x: and its size)."""
    from .. import opennebula

    call = _Call(ctx, arguments)
    version = call.version
    act, cfg = call.act, call.cfg
    server = target_server(ctx, cfg=cfg, ahead=True)
    from .. import datastore  # while ssh connects

    fstype = datastore.SAVE_AS if act.save_as else act.filesystem(version)
    done = datastore.mkfs(act.image_id, act.size_mb, fstype, cfg, server)
    _notes("mkfs", done)
    print(opennebula.mkfs_reply(version, done.source, done.size_mb))


@app.command("clone")
def clone(ctx: typer.Context, arguments: CallArguments) -> None:
    """A new image copied from the image whose SOURCE is IMAGE/PATH, on the
    target server; prints the new SOURCE (and its format, 6.0 and later)."""
    from .. import datastore, opennebula

    call = _Call(ctx, arguments)
    version = call.version
    act, cfg = call.act, call.cfg
    done = datastore.clone(act.path, act.image_id, cfg, target_server(ctx, cfg=cfg))
    _notes("clone", done)
    print(opennebula.cp_reply(max(version, (4,)), done.source, done.size_mb, done.format))


@app.command("rm")
def rm(ctx: typer.Context, arguments: CallArguments) -> None:
    """Delete the image's target and volume; already gone is fine."""
    from .. import opennebula

    call = _Call(ctx, arguments)
    server = target_server(ctx, cfg=call.cfg, ahead=True)
    from .. import datastore  # while ssh connects

    for note in datastore.rm(call.act.source, call.act.image_id, call.cfg, server):
        opennebula.log_info("rm", note)


@app.command("stat")
def stat(ctx: typer.Context, arguments: CallArguments) -> None:
    """Print the size in MB of the image PATH (local file or URL)."""
    from .. import datastore

    call = _Call(ctx, arguments)
    print(datastore.stat(call.act.path, call.cfg, local_runner(call.cfg), keep_qcow2=call.act.keeps_qcow2))


@app.command("monitor")
def monitor(ctx: typer.Context, arguments: CallArguments) -> None:
    """Print USED_MB, TOTAL_MB and FREE_MB of the volume group or pool directory."""
    from .. import opennebula

    call = _Call(ctx, arguments)
    server = target_server(ctx, cfg=call.cfg, ahead=True)
    from .. import datastore  # while ssh connects

    usage = datastore.monitor(call.cfg, server)
    print(opennebula.monitor_reply(usage.used_mb, usage.total_mb, usage.free_mb))


@app.command("unsupported", hidden=True)
def unsupported(action: Annotated[str, typer.Argument(metavar="ACTION")],
                arguments: Annotated[List[str], typer.Argument(metavar="ARGS")] = None) -> None:
    """A datastore action the iscsi driver does not offer (snapshots, backups)."""
    from .. import opennebula

    opennebula.unsupported("datastore", action)


@app.command("copy")
def copy(ctx: typer.Context,
         path: Annotated[str, typer.Argument(metavar="SRC", help="Image: local raw or qcow2 file, or http(s) URL.")],
         device: Annotated[str, typer.Argument(metavar="DEV", help="Existing device or file on the target server.")]) -> None:
    """Write an image onto an existing device of the target server (by hand:
    restore a volume, re-image a disk). Zero blocks are not sent over the
    network, but written there, so nothing of the old content survives."""
    from .. import datastore

    cfg = load_config(ctx)
    size = datastore.copy(path, device, cfg, target_server(ctx, cfg=cfg), local_runner(cfg),
                          progress_for=Progress.for_terminal)
    info(f"wrote {size / MIB:.1f} MiB ({size} bytes) to {device}")
