"""`one-iscsi config ...`: the configuration in effect. Runs nothing."""

import typer

from .common import JsonOption, load_config, print_json, print_table

app = typer.Typer(help="Show the configuration in effect and where each value comes from.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context, json: JsonOption = False) -> None:
    """Print every configuration key with its value and origin.

    The origin is default, FILE:LINE of iscsi.conf, environment ONE_ISCSI_KEY
    or the command line (--host). Secret values (CHAP_PASSWORD) show as ********."""
    from .. import config
    from ..command import MASK

    cfg = load_config(ctx)
    rows = []
    for key in config.KEYS:
        text, origin = cfg.settings[key.name]
        rows.append({"key": key.name, "value": MASK if key.secret and text else text, "origin": origin})
    if json:
        print_json(rows)
    else:
        print_table([list(row.values()) for row in rows], ["KEY", "VALUE", "ORIGIN"])
