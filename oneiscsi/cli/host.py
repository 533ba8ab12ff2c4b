"""`one-iscsi host ...`: the initiator side, on the hypervisor hosts."""

from typing import Annotated

import typer

from .. import completion
from .common import IqnArgument, info, load_config, runner_on

app = typer.Typer(help="Discover, log in to and log out of targets on hypervisor hosts.",
                  no_args_is_help=True)

OnOption = Annotated[str, typer.Option("--on", metavar="HOST", autocompletion=completion.hosts,
                                       help="Hypervisor host to run on.")]
TargetHostArgument = Annotated[str, typer.Argument(metavar="TARGET_HOST", help="Target server (portal).")]


@app.command("discover")
def discover(ctx: typer.Context, target_host: TargetHostArgument, on: OnOption) -> None:
    """Discover the targets of a target server on PORTAL_PORT (iscsiadm_discovery)."""
    from .. import initiator

    cfg = load_config(ctx)
    print(initiator.discover(runner_on(ctx, on, cfg), initiator.portal(target_host, cfg)), end="")


@app.command("login")
def login(ctx: typer.Context, iqn: IqnArgument, target_host: TargetHostArgument, on: OnOption) -> None:
    """Log in to a target on PORTAL_PORT of its server (iscsiadm_login); an existing session is fine."""
    from .. import initiator

    cfg = load_config(ctx)
    if not initiator.login(runner_on(ctx, on, cfg), iqn, initiator.portal(target_host, cfg)):
        info(f"{on}: already logged in to {iqn}")


@app.command("logout")
def logout(ctx: typer.Context, iqn: IqnArgument, on: OnOption) -> None:
    """Log out of a target (iscsiadm_logout); no session is fine."""
    from .. import initiator

    if not initiator.logout(runner_on(ctx, on), iqn):
        info(f"{on}: no session to {iqn}")


@app.command("is-iscsi")
def is_iscsi_host(ctx: typer.Context,
                  host: Annotated[str, typer.Argument(metavar="HOST", help="Host name.")]) -> None:
    """Exit 0 if logins are done on HOST, 1 if HOST is listed in NO_ISCSI (is_iscsi)."""
    from .. import initiator

    if not initiator.is_iscsi(host, load_config(ctx)):
        raise typer.Exit(1)
