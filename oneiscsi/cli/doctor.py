"""`one-iscsi doctor`: checks the target server and hypervisor hosts."""
from typing import Annotated, Optional

import typer

from .. import completion
from .common import JsonOption, info, load_config, print_json, print_table, runner_on, target_server

app = typer.Typer(subcommand_metavar="")  # no subcommands: the help is the callback's
STATUS = {True: "ok", False: "FAILED", None: "skipped"}


@app.callback(invoke_without_command=True)
def doctor(
    ctx: typer.Context,
    on: Annotated[Optional[list[str]], typer.Option(
        "--on", metavar="HOST", autocompletion=completion.hosts,
        help="A hypervisor host to check too; repeat for more.")] = None,
    json: JsonOption = False,
) -> None:
    """Check the target server (-H, default HOST): ssh, sudo rules of the tools
    one-iscsi runs there, tgtd and its portal on PORTAL_PORT, the volume group
    or pool directory, CONF_DIR and tgt's include of it, the TIDs tgt's start
    gives the targets of its configuration, the lock directory;
    and each --on HOST: ssh, sudo for iscsiadm, open-iscsi, its initiator
    name, a TCP connection to the portal. Changes nothing. One line per check
    with what to do when it fails; exit status 1 if any failed."""
    from .. import doctor as checks

    cfg = load_config(ctx)
    hosts = [runner_on(ctx, host, cfg) for host in dict.fromkeys(on or ())]
    results = checks.examine(target_server(ctx, cfg), hosts)
    if json:
        print_json([result.as_dict() for result in results])
    else:
        print_table([[r.host, r.name, STATUS[r.ok], r.detail] for r in results], ["HOST", "CHECK", "STATUS", "DETAIL"])
    failed = sum(result.ok is False for result in results)
    if failed:
        info(f"one-iscsi: {failed} of {len(results)} checks failed")
        raise typer.Exit(1)
