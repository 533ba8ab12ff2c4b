"""`one-iscsi target ...`: targets on the target server's tgtd (or LIO)."""

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Iterator, Optional

import typer

from .. import completion

if TYPE_CHECKING:
    from ..targets import TargetServer
from .common import IqnArgument, JsonOption, globals_of, info, print_json, print_table, target_server

app = typer.Typer(help="Create, list, change and delete iSCSI targets on the target server.",
                  no_args_is_help=True)
acl_app = typer.Typer(help="The initiators a target lets in (its ACL).", no_args_is_help=True)
chap_app = typer.Typer(help="The CHAP account a target asks initiators for.", no_args_is_help=True)
app.add_typer(acl_app, name="acl")
app.add_typer(chap_app, name="chap")

TargetArgument = Annotated[str, typer.Argument(metavar="TID|IQN", autocompletion=completion.tid_or_iqn,
                                               help="Target ID or exact target name.")]
ForceOption = Annotated[bool, typer.Option(
    "--force", "-f", help="Also a target one-iscsi did not make (changed in tgtd only), or one with sessions.")]


@contextmanager
def server_of(ctx: typer.Context, lock: bool = False) -> Iterator["TargetServer"]:
    """The target server's tgtd (or LIO, TARGET=lio); with lock, holding
    LOCK_FILE as the driver does when it changes targets."""
    from ..liotargets import server_for

    with target_server(ctx).session(lock=lock) as session:
        yield server_for(session)


def notify(notes) -> None:
    for note in notes:
        info(note)


def mib(size: int) -> str:
    return f"{size} MiB"


@app.command("new")
def new(ctx: typer.Context, iqn: IqnArgument,
        tid: Annotated[Optional[int], typer.Option(
            "--tid", min=1, help="Target ID to use (default: the next one tgtd has free after the last one "
                                 "allocated, >= BASE_TID).")] = None) -> None:
    """Create a target and print its TID (tgtadm_target_new), saved in
    CONF_DIR with that TID, no LUN and no initiator allowed yet; an existing
    target of that name is kept and its TID printed. (LIO has no TIDs: the
    IQN is printed.)"""
    with server_of(ctx, lock=True) as server:
        tid, created = server.create(iqn, tid)
    if not created:
        had = f" with TID {tid}" if isinstance(tid, int) else ""
        info(f"target {iqn} already exists on {server.host}{had}: nothing changed")
    if not globals_of(ctx).dry_run:
        print(tid)


@app.command("bind-all")
def bind_all(ctx: typer.Context, target: TargetArgument, force: ForceOption = False) -> None:
    """Allow every initiator to use a target (tgtadm_target_bind_all): `acl add TID|IQN ALL`."""
    with server_of(ctx, lock=True) as server:
        notify(server.allow_initiators(target, ["ALL"], force))


@app.command("delete")
def delete(ctx: typer.Context, target: TargetArgument,
           force: Annotated[bool, typer.Option(
               "--force", "-f", help="Delete even with initiators logged in, or a target one-iscsi did not make.")
           ] = False) -> None:
    """Delete a target (tgtadm_target_delete) and its saved file."""
    with server_of(ctx, lock=True) as server:
        server.delete_and_forget(target, force)


@app.command("tid")
def tid(ctx: typer.Context, iqn: IqnArgument) -> None:
    """Print the TID of exactly this IQN (tgtadm_get_tid_for_iqn)."""
    with server_of(ctx) as server:
        print(server.tid_of(iqn))


@app.command("list")
def list_targets(ctx: typer.Context, json: JsonOption = False) -> None:
    """List the targets: whether one-iscsi made them, LUN 1's size, LUNs, ACL, sessions."""
    with server_of(ctx) as server:
        listed = server.overview()
    if json:
        print_json([entry.as_dict() for entry in listed])
        return
    print_table([_row(entry) for entry in listed], ["TID", "IQN", "MANAGED", "SIZE", "LUNS", "ACL", "SESSIONS"])


def _row(entry) -> list:
    target = entry.target
    luns = " ".join(f"{lun.lun}:{lun.backing_store}" for lun in target.luns) or "-"
    size = next((mib(lun.size_mib) for lun in target.luns if lun.lun == 1), "-")
    return [target.tid or "-", target.iqn, _yes(entry.managed), size, luns, ",".join(target.acl) or "-",
            len(target.sessions)]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


@app.command("show")
def show(ctx: typer.Context, target: TargetArgument, json: JsonOption = False) -> None:
    """Show one target: whether one-iscsi made it, LUNs with backing store
    and size, ACL, accounts, sessions."""
    with server_of(ctx) as server:
        [entry] = server.overview(target)
    if json:
        print_json(entry.as_dict())
        return
    shown, data = entry.target, entry.as_dict()
    print_table([
        ["TID", shown.tid or "-"],  # LIO has none
        ["IQN", shown.iqn],
        ["Managed", _yes(entry.managed)],
        *[[f"LUN {lun.lun}", f"{lun.backing_store} ({mib(lun.size_mib)})"] for lun in shown.luns],
        ["ACL", " ".join(shown.acl) or "-"],
        ["Accounts", " ".join(shown.accounts) or "-"],
        ["Sessions", data["sessions"]],
        ["Initiators", " ".join(data["initiators"]) or "-"],
    ], ["FIELD", "VALUE"])


@app.command("restore")
def restore(ctx: typer.Context) -> int:
    """Bring every target one-iscsi saved (CONF_DIR) back into a running tgtd,
    e.g. after tgtd restarted (on LIO: its targets in the saved configuration
    that LIO lacks); targets one-iscsi does not own are not touched."""
    with server_of(ctx, lock=True) as server:
        restored, present, failed = server.restore()
    for iqn in restored:
        info(f"restored {iqn}")
    for _what, reason in failed:
        print(f"not restored: {reason}", file=sys.stderr)
    summary = f"{len(restored)} restored, {len(present)} already present"
    info(f"{summary}, {len(failed)} failed" if failed else summary)
    return 1 if failed else 0


InitiatorsArgument = Annotated[list[str], typer.Argument(
    metavar="ADDRESS|NETWORK|INITIATOR_NAME...",
    help="Initiator addresses (10.0.0.5), networks (10.0.0.0/24), names (iqn.1993-08.org.debian:01:node1), or ALL.")]


@acl_app.command("add")
def acl_add(ctx: typer.Context, target: TargetArgument, initiators: InitiatorsArgument,
            force: ForceOption = False) -> None:
    """Let these initiators use a target (ALL: every one), in tgtd and its saved file."""
    with server_of(ctx, lock=True) as server:
        notify(server.allow_initiators(target, initiators, force))


@acl_app.command("remove")
def acl_remove(ctx: typer.Context, target: TargetArgument, initiators: InitiatorsArgument,
               force: ForceOption = False) -> None:
    """Take these initiators (or ALL) out of a target's ACL, in tgtd and its
    saved file; sessions already open stay."""
    with server_of(ctx, lock=True) as server:
        notify(server.deny_initiators(target, initiators, force))


@acl_app.command("list")
def acl_list(ctx: typer.Context, target: TargetArgument, json: JsonOption = False) -> None:
    """Print the initiators tgtd lets use a target, one a line."""
    with server_of(ctx) as server:
        acl = server.acl(target)
    if json:
        print_json(list(acl))
        return
    for initiator in acl:
        print(initiator)
    if not acl:
        info("no initiator may use this target")


@chap_app.command("set")
def chap_set(ctx: typer.Context, target: TargetArgument,
             user: Annotated[str, typer.Option("--user", "-u", metavar="USER", help="CHAP user name.")],
             password_file: Annotated[Optional[str], typer.Option(
                 "--password-file", metavar="FILE",
                 help="Read the password (12 to 16 characters) from the first line of FILE, '-' for standard "
                      "input; without it, it is asked on the terminal.")] = None,
             force: ForceOption = False) -> None:
    """Make USER the CHAP account of a target, in tgtd and its saved file.
    The password is never taken on the command line."""
    password = read_password(password_file)
    with server_of(ctx, lock=True) as server:
        notify(server.set_chap(target, user, password, force))


@chap_app.command("unset")
def chap_unset(ctx: typer.Context, target: TargetArgument, force: ForceOption = False) -> None:
    """Let a target's initiators in without CHAP, in tgtd and its saved file."""
    with server_of(ctx, lock=True) as server:
        notify(server.unset_chap(target, force))


def read_password(file: Optional[str]) -> str:
    """The first line of file ('-': stdin), or what is typed on the terminal, twice."""
    from pathlib import Path

    from ..errors import InvalidInput

    if file is None:
        if not sys.stdin.isatty():
            raise InvalidInput("no terminal to ask the CHAP password on: give --password-file FILE "
                               "(- for standard input)")
        return typer.prompt("CHAP password", hide_input=True, confirmation_prompt=True, err=True)
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInput(f"cannot read the password file {file}: {getattr(err, 'strerror', None) or err}") \
            from None
    return next(iter(text.splitlines()), "")
