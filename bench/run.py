"""Run the benchmarks of one-iscsi, each against its baselines in the same run.

    .venv/bin/python bench/run.py [--quick] [--only NAME]... [--readme]

startup     `one-iscsi iqn host` vs a minimal typer app (floor: python -c pass)
fixed_cost  every driver action through the remotes vs `ssh HOST true`, ssh
            connections per host per action vs the same steps as plain ssh,
            and the local actions (HOST=localhost) vs python -c pass / typer
copy        `one-iscsi image copy`: random data vs `cat IMG | ssh -o Ciphers=C
            HOST dd bs=4M conv=fsync` and (locally) vs `dd bs=4M conv=fsync`;
            a 90%-zero image, byte-exact; peak memory
copy_via    `datastore cp` with COPY_VIA=ssh and =iscsi vs the ssh pipe and a
            bare `qemu-img convert` onto an existing target
scale       target new / delete, image cp / rm with 4000 existing targets vs 10

Every figure is min / median / max over interleaved rounds (A B A B ...: at
least 7, --quick 3); ratios are the ratio of the medians with the range of
the per-round ratios. Goals are reported (met / NOT MET), not asserted: the
exit status is 1 only if a benchmark crashed. Each benchmark writes
bench/results/<name>.json, the run bench/results/summary.json. A full run
(no --quick, no --only; or any run with --readme) rewrites the table between
the bench markers of README.md's Performance section. Every daemon, loop
device and temporary file is removed at the end, also on failure or SIGTERM.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import re
import shlex
import signal
import sys
import time
import traceback

BENCHMARKS = {"startup": "startup", "fixed_cost": "fixed_cost", "copy": "copy_throughput",
              "copy_via": "copy_via", "scale": "scale"}
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # unwinds the context managers that stop the daemons


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and 3 rounds instead of 7")
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--readme", action="store_true",
                        help="rewrite README.md's Performance table even after a --quick or --only run")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    for key in [key for key in os.environ if key.startswith("ONE_ISCSI_") or key == "ONE_LOCATION"]:
        del os.environ[key]  # nothing of the machine's configuration leaks into the runs
    given = argv if argv is not None else sys.argv[1:]
    command = (f"make bench{' BENCH_ARGS=' + shlex.quote(shlex.join(given)) if given else ''}"
               if "MAKELEVEL" in os.environ else shlex.join([".venv/bin/python", "bench/run.py", *given]))
    compile_package()
    started, when = time.monotonic(), datetime.datetime.now(datetime.timezone.utc)
    results, crashed, load = [], [], {}
    for name in args.only or BENCHMARKS:
        begun, load[name] = time.monotonic(), os.getloadavg()[0]
        try:
            module = importlib.import_module(BENCHMARKS[name])
            results.append(module.run(args.quick))
        except Exception:  # one crashed benchmark must not hide the others' figures
            traceback.print_exc()
            crashed.append(name)
        print(f"({name}: {time.monotonic() - begun:.1f} s)", flush=True)
    elapsed = time.monotonic() - started
    rows = summary_rows(results)
    from common import table, write_json

    print("\n== summary of the goals")
    print(table(rows, ["benchmark", "goal", "one-iscsi", "baseline", "floor, context", "measured", "goal", "verdict"]))
    for name in crashed:
        print(f"crashed: {name} (see the traceback above)")
    print(f"total running time: {elapsed:.0f} s")
    busy = ", ".join(f"{name} {value:.1f}" for name, value in load.items())
    print(f"load average (1 min) as each benchmark began: {busy}"
          + (" (the machine was busy: the figures are noisier)" if max(load.values()) >= 1 else ""))
    produced = provenance(command, when, elapsed, args.quick, busy)
    write_json("summary", {"produced": produced, "crashed": crashed, "load_average": load, "goals": rows})
    if args.readme or not (args.quick or args.only):
        write_readme(rows, produced, crashed)
    return 1 if crashed else 0


def compile_package() -> None:
    """one-iscsi as installed: `pip install` compiles its bytecode, an
    editable install does not (and PYTHONDONTWRITEBYTECODE may keep Python
    from caching it), which would add ~30 ms to every run measured."""
    import compileall

    package = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "oneiscsi")
    if not compileall.compile_dir(package, quiet=1):
        raise SystemExit(f"cannot compile {package}")


def summary_rows(results: list) -> list:
    from common import Goal

    rows = []
    for result in results:
        for fields in result["goals"]:
            goal = Goal(**{key: value for key, value in fields.items() if key != "met"})
            rows.append([result["name"], goal.text, goal.ours or "-", goal.baseline or "-", goal.floor or "-",
                         goal.measured_text, goal.limit_text, goal.verdict])
    return rows


def provenance(command: str, when: datetime.datetime, elapsed: float, quick: bool, busy: str) -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                   platform.processor() or "unknown CPU")
    return (f"`{command}` ({'--quick, ' if quick else ''}{elapsed / 60:.0f} min) on "
            f"{when:%Y-%m-%d %H:%M} UTC; machine: {len(os.sched_getaffinity(0))} cores (nproc), {cpu}, "
            f"Linux {platform.release()}, Python {platform.python_version()}; load average as each benchmark "
            f"began: {busy}")


def write_readme(rows: list, produced: str, crashed: list) -> None:
    """The table between the bench markers of README.md, from this run."""
    from common import REPO, table

    body = table([[cell.replace("|", "\\|") for cell in row] for row in rows],
                 ["benchmark", "goal", "one-iscsi", "baseline", "floor, context", "measured (rounds)", "goal",
                  "verdict"],
                 tablefmt="github")
    lines = [f"Produced by {produced}.", "", body]
    if crashed:
        lines += ["", "Crashed in that run (no figures): " + ", ".join(crashed) + "."]
    readme = REPO / "README.md"
    text = replace_block(readme.read_text(), "\n".join(lines))
    if text is None:
        print(f"README.md has no {BEGIN} ... {END} markers: table not written")
        return
    readme.write_text(text)
    print(f"README.md: Performance table rewritten ({len(rows)} goals)")


def replace_block(text: str, content: str):
    """text with what is between the bench markers replaced by content; None without the markers."""
    found = re.search(re.escape(BEGIN) + ".*?" + re.escape(END), text, flags=re.S)
    if found is None:
        return None
    return text[:found.start()] + f"{BEGIN}\n{content}\n{END}" + text[found.end():]


if __name__ == "__main__":
    sys.exit(main())
