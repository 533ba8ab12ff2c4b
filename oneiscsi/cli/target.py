"""`one-iscsi target ...`: targets on the target server's tgtd."""

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Iterator, Optional

import typer

from .. import completion

if TYPE_CHECKING:
    from ..targets import TargetServer
from .common import (IqnArgument, JsonOption, TidArgument, globals_of, info, print_json,
                     print_table, target_server)

app = typer.Typer(help="Create, list and delete iSCSI targets on the target server.",
                  no_args_is_help=True)


@contextmanager
def _server(ctx: typer.Context, lock: bool = False) -> Iterator["TargetServer"]:
    from ..targets import TargetServer

    with target_server(ctx).session(lock=lock) as session:
        yield TargetServer(session)


@app.command("new")
def new(ctx: typer.Context, iqn: IqnArgument,
        tid: Annotated[Optional[int], typer.Option(
            "--tid", min=1, help="Target ID to use (default: the lowest free one >= BASE_TID).")] = None) -> None:
    """Create a target and print its TID (tgtadm_target_new); an existing
    target of that name is kept and its TID printed."""
    with _server(ctx, lock=True) as server:
        tid, created = server.new(iqn, tid)
    if not created:
        info(f"target {iqn} already exists on {server.host} with TID {tid}: nothing changed")
    if not globals_of(ctx).dry_run:
        print(tid)


@app.command("bind-all")
def bind_all(ctx: typer.Context, tid: TidArgument) -> None:
    """Allow every initiator to use a target (tgtadm_target_bind_all)."""
    with _server(ctx) as server:
        server.bind_all(tid)


@app.command("delete")
def delete(ctx: typer.Context,
           target: Annotated[str, typer.Argument(metavar="TID|IQN", autocompletion=completion.tids_and_iqns,
                                                 help="Target ID or exact target name.")],
           force: Annotated[bool, typer.Option("--force", "-f", help="Delete even if initiators are logged in.")] = False) -> None:
    """Delete a target (tgtadm_target_delete), and its config file if one-iscsi saved one."""
    with _server(ctx) as server:
        server.delete_and_forget(target, force)


@app.command("tid")
def tid(ctx: typer.Context, iqn: IqnArgument) -> None:
    """Print the TID of exactly this IQN (tgtadm_get_tid_for_iqn)."""
    with _server(ctx) as server:
        print(server.tid_of(iqn))


@app.command("list")
def list_targets(ctx: typer.Context, json: JsonOption = False) -> None:
    """List the targets with their LUNs, ACL and sessions."""
    with _server(ctx) as server:
        targets = server.list()
    if json:
        print_json([target.as_dict() for target in targets])
        return
    print_table([_row(target) for target in targets], ["TID", "IQN", "LUNS", "ACL", "SESSIONS"])


@app.command("show")
def show(ctx: typer.Context, iqn: IqnArgument, json: JsonOption = False) -> None:
    """Show one target: LUNs with backing store and size, ACL, accounts, sessions."""
    with _server(ctx) as server:
        target = server.get(iqn)
    if json:
        print_json(target.as_dict())
        return
    data = target.as_dict()
    print_table([
        ["TID", target.tid],
        ["IQN", target.iqn],
        *[[f"LUN {lun.lun}", f"{lun.backing_store} ({lun.size_mb} MB)"] for lun in target.luns],
        ["ACL", " ".join(target.acl) or "-"],
        ["Accounts", " ".join(target.accounts) or "-"],
        ["Sessions", data["sessions"]],
        ["Initiators", " ".join(data["initiators"]) or "-"],
    ], ["FIELD", "VALUE"])


def _row(target) -> list:
    luns = " ".join(f"{lun.lun}:{lun.backing_store}" for lun in target.luns) or "-"
    return [target.tid, target.iqn, luns, ",".join(target.acl) or "-", len(target.sessions)]


@app.command("restore")
def restore(ctx: typer.Context) -> int:
    """Bring every target one-iscsi saved (CONF_DIR) back into a running tgtd,
    e.g. after tgtd restarted; targets one-iscsi does not own are not touched."""
    with _server(ctx, lock=True) as server:
        restored, present, failed = server.restore()
    for iqn in restored:
        info(f"restored {iqn}")
    for _what, reason in failed:
        print(f"not restored: {reason}", file=sys.stderr)
    summary = f"{len(restored)} restored, {len(present)} already present"
    info(f"{summary}, {len(failed)} failed" if failed else summary)
    return 1 if failed else 0
