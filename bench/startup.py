"""startup: wall time of `one-iscsi iqn host IQN` (runs nothing: start-up,
argument parsing, one line printed).

Measured interleaved with, as its baseline, a minimal typer app with one
command doing the same (the floor of any typer command line) and, as the
floor, `python -c pass`; all with the venv's python, after 2 warm-up rounds.
Goal: one-iscsi <= 1.0x the minimal typer app (ratio of medians; the spread
of the per-round ratios is shown). Also prints the modules one-iscsi imports
that the typer app does not, slowest first (`python -X importtime`): what
could still be imported lazily."""
from __future__ import annotations

import re
import subprocess
from collections import defaultdict

from common import (ONE_ISCSI, PYTHON, Ratio, goal_from_ratio, interleave, median, report, run_quietly, scratch,
                    spread, table, typer_app)

IQN = "iqn.2012-02.org.opennebula:tgt1.example.com.vg-one.lv-one-7"
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_times(argv: list[str], runs: int) -> dict[str, float]:
    """{module: median self time in ms} of the imports of `python -X importtime ARGV`."""
    own: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        done = run_quietly([PYTHON, "-X", "importtime", *argv], "python -X importtime", timeout=30)
        for match in _IMPORT_LINE.finditer(done.stderr):
            own[match[4]].append(int(match[1]) / 1000)
    return {module: median(values) for module, values in own.items()}


def run(quick: bool) -> dict:
    runs = 10 if quick else 30
    with scratch("startup") as work:
        app = typer_app(work)
        commands = {"one-iscsi iqn host": [PYTHON, ONE_ISCSI, "iqn", "host", IQN],
                    "minimal typer app": [PYTHON, app, IQN],
                    "python -c pass": [PYTHON, "-c", "pass"]}
        outputs = {name: run_quietly(argv, name, timeout=30).stdout for name, argv in commands.items()}
        if outputs["one-iscsi iqn host"] != outputs["minimal typer app"]:
            raise RuntimeError(f"the typer app does not print what one-iscsi prints: {outputs}")
        times = interleave({name: (lambda argv=argv: subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=True))
            for name, argv in commands.items()}, runs, warmup=2)
        ours = import_times([ONE_ISCSI, "iqn", "host", IQN], 3)
        floor = import_times([app, IQN], 3)
    one, typer_times, bare = (times[name] for name in commands)
    versus_typer, versus_python = Ratio.of(one, typer_times), Ratio.of(one, bare)
    rows = [[name, spread(values, 1000), Ratio.of(values, typer_times).text, Ratio.of(values, bare).text]
            for name, values in times.items()]
    extra = sorted(((module, ms) for module, ms in ours.items() if module not in floor),
                   key=lambda row: row[1], reverse=True)
    print(f"\n-- startup: modules `one-iscsi iqn host` imports that the minimal typer app does not: {len(extra)}, "
          f"{sum(ms for _, ms in extra):.0f} ms self time together (median of 3 runs); the slowest 8:")
    print(table([list(row) for row in extra[:8]], ["module", "self ms"]))
    goals = [goal_from_ratio("start-up of `one-iscsi iqn host` vs a minimal typer app", versus_typer, 1.0,
                             ours=spread(one, 1000, "ms"), baseline=f"typer app {spread(typer_times, 1000, 'ms')}",
                             floor=f"python -c pass {spread(bare, 1000, 'ms')}")]
    notes = [f"min / median / max of {runs} interleaved rounds after 2 warm-up rounds, the venv's python",
             f"beyond `python -c pass` (medians): one-iscsi {1000 * (median(one) - median(bare)):.0f} ms, "
             f"the typer app {1000 * (median(typer_times) - median(bare)):.0f} ms",
             f"one-iscsi vs python -c pass: {versus_python.text}"]
    return report("startup", "start-up of `one-iscsi iqn host` vs a minimal typer app and bare python",
                  ["command", "ms (min / median / max)", "x typer app", "x python -c pass"], rows, goals,
                  figures={"runs": runs, "seconds": times, "extra_modules_self_ms": dict(extra)},
                  notes=notes, quick=quick)
