"""`one-iscsi iqn ...`: build and take apart target names. Runs nothing."""

from typing import Annotated, Optional

import typer

from .common import JsonOption, load_config, print_json

app = typer.Typer(help="Build, check and take apart target names (IQNs).", no_args_is_help=True)

IqnArgument = Annotated[str, typer.Argument(metavar="IQN", help="Target name.")]


@app.command("parse")
def parse(ctx: typer.Context, iqn: IqnArgument, json: JsonOption = False) -> None:
    """Print the base IQN, target host, volume group, volume and device of an IQN
    (the device as BACKEND and POOL_DIR of the configuration make it)."""
    from .. import names, storage

    target = names.parse(iqn)
    device = storage.volume_named(target.vg, target.lv, load_config(ctx)).device
    data = {**target.as_dict(), "device": device}
    if json:
        print_json(data)
        return
    width = max(map(len, data))
    for key, value in data.items():
        print(f"{key:<{width}}  {value}")


@app.command("lv-name")
def lv_name(iqn: IqnArgument) -> None:
    """Print the volume name of an IQN (iqn_get_lv_name)."""
    from .. import names

    print(names.parse(iqn).lv)


@app.command("vg-name")
def vg_name(iqn: IqnArgument) -> None:
    """Print the volume group of an IQN (iqn_get_vg_name)."""
    from .. import names

    print(names.parse(iqn).vg)


@app.command("host")
def host(iqn: IqnArgument) -> None:
    """Print the target host of an IQN (iqn_get_host)."""
    from .. import names

    print(names.parse(iqn).host)


@app.command("build")
def build(ctx: typer.Context,
          vg: Annotated[Optional[str], typer.Option("--vg", help="Volume group (default: VG_NAME).")] = None,
          lv: Annotated[str, typer.Option("--lv", help="Volume name, e.g. lv-one-7.")] = ...,
          base_iqn: Annotated[Optional[str], typer.Option("--base-iqn", help="Base IQN (default: BASE_IQN).")] = None,
          ) -> None:
    """Print the IQN for a volume of HOST (--host), after checking that tgtd would accept it."""
    from .. import names

    cfg = load_config(ctx, vg_name=vg, base_iqn=base_iqn)
    print(names.build(cfg.base_iqn, cfg.host, cfg.vg_name, lv).iqn)
