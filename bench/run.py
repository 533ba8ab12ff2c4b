"""Run the benchmarks of one-iscsi, each against its baseline in the same run.

    .venv/bin/python bench/run.py [--quick] [--only NAME]...

startup   start-up of `one-iscsi iqn parse` vs a minimal typer app and bare python
sessions  ssh connections per driver action vs the original driver's counts
copy      image copy throughput and memory vs `cat IMG | ssh HOST dd of=DEV bs=64k`
scale     target new/tid/delete with 10, 1000, 4000 existing targets (time at 10 is the baseline)
e2e       cp + ln + mvds + rm through the remotes vs the same steps as plain ssh commands

Each benchmark prints a table and its goals (met / NOT MET, with the measured
ratio) and writes bench/results/<name>.json. Goals are reported, not
asserted: the exit status is 0 unless a benchmark crashed (then 1). Every
daemon, loop device and temporary file is removed at the end, also on failure.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
import traceback

BENCHMARKS = {"startup": "startup", "sessions": "sessions", "copy": "copy_throughput",
              "scale": "scale", "e2e": "e2e"}


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # unwinds the context managers that stop the daemons


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer runs")
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    for key in [key for key in os.environ if key.startswith("ONE_ISCSI_")]:
        del os.environ[key]  # nothing of the machine's configuration leaks into the runs
    started = time.monotonic()
    results, crashed = [], []
    for name in args.only or BENCHMARKS:
        begun = time.monotonic()
        try:
            module = importlib.import_module(BENCHMARKS[name])
            results.append(module.run(args.quick))
        except Exception:  # one crashed benchmark must not hide the others' figures
            traceback.print_exc()
            crashed.append(name)
        print(f"({name}: {time.monotonic() - begun:.1f} s)", flush=True)
    summary(results, crashed, time.monotonic() - started)
    return 1 if crashed else 0


def summary(results: list, crashed: list, elapsed: float) -> None:
    from common import Goal, table

    rows = []
    for result in results:
        for goal in result["goals"]:
            shown = Goal(goal["text"], goal["measured"], goal["limit"], goal["at_least"], goal["unit"])
            rows.append([result["name"], shown.text, shown.measured_text, shown.limit_text, shown.verdict])
    print("\n== summary of the goals")
    print(table(rows, ["benchmark", "goal", "measured", "goal", "verdict"]))
    for name in crashed:
        print(f"crashed: {name} (see the traceback above)")
    print(f"total running time: {elapsed:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
