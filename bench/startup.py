"""startup: wall time of `one-iscsi iqn parse IQN` (a command that runs
nothing: pure start-up, argument parsing and printing).

Baselines, run interleaved with it and with the venv's python: a minimal typer
app with one command (the floor for any typer CLI; written to a temporary
file) and `python -c pass` (the interpreter alone). Goal: one-iscsi <= 1.2x
the minimal typer app. Also lists the top modules by cumulative import time
of one-iscsi's start-up (`python -X importtime`), median over the runs, to
show what could be imported lazily."""
from __future__ import annotations

import re
import subprocess
from collections import defaultdict

from common import ONE_ISCSI, PYTHON, Goal, check, interleave, median, ratio, report, scratch, table

IQN = "iqn.2012-02.org.opennebula:h.vg-one.lv-one-1"
MINIMAL_APP = '''import typer

app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False, add_completion=False)


@app.command()
def parse(iqn: str) -> None:
    print(iqn)


app()
'''
# packages the design says must not load at start-up (or not at all)
HEAVY = ("tabulate", "sh", "pydantic", "rich", "defusedxml", "shellingham")
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_times(argv: list[str], runs: int) -> list[tuple[str, float, float]]:
    """[(module, median self ms, median cumulative ms)] of the start-up of
    `python -X importtime ARGV`, slowest cumulative first."""
    own: dict[str, list[float]] = defaultdict(list)
    cumulative: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        done = check(subprocess.run([PYTHON, "-X", "importtime", *argv], capture_output=True, text=True,
                                    timeout=30), "python -X importtime")
        for match in _IMPORT_LINE.finditer(done.stderr):
            own[match[4]].append(int(match[1]) / 1000)
            cumulative[match[4]].append(int(match[2]) / 1000)
    rows = [(module, median(own[module]), median(values)) for module, values in cumulative.items()]
    return sorted(rows, key=lambda row: row[2], reverse=True)


def run(quick: bool) -> dict:
    runs, profile_runs = (15, 5) if quick else (30, 10)
    with scratch("startup") as work:
        app = work / "minimal_typer.py"
        app.write_text(MINIMAL_APP)
        commands = {
            "one-iscsi iqn parse": [PYTHON, ONE_ISCSI, "iqn", "parse", IQN],
            "minimal typer app": [PYTHON, str(app), IQN],
            "python -c pass": [PYTHON, "-c", "pass"],
        }
        for name, argv in commands.items():  # each must work before it is timed
            check(subprocess.run(argv, capture_output=True, text=True, timeout=30), name)
        times = interleave({name: (lambda argv=argv: subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=True))
            for name, argv in commands.items()}, runs, warmup=2)
        modules = import_times([ONE_ISCSI, "iqn", "parse", IQN], profile_runs)
        minimal = {module for module, _, _ in import_times([str(app), IQN], profile_runs)}
    medians = {name: median(values) for name, values in times.items()}
    one, typer_app, bare = (medians[name] for name in commands)
    rows = [[name, medians[name] * 1000, min(times[name]) * 1000, ratio(medians[name], typer_app),
             ratio(medians[name], bare)] for name in commands]
    top = modules[:10]
    extra = sorted((row for row in modules if row[0] not in minimal), key=lambda row: row[1], reverse=True)
    heavy = sorted(module for module, _, _ in modules if module.split(".")[0] in HEAVY)
    print(f"\n-- startup: top 10 modules by cumulative import time of `one-iscsi iqn parse` "
          f"(median of {profile_runs} runs of python -X importtime)")
    print(table([list(row) for row in top], ["module", "self ms", "cumulative ms"]))
    print(f"\n-- startup: the {len(extra)} modules one-iscsi imports that the minimal typer app does not "
          f"(together {sum(row[1] for row in extra):.0f} ms self time); top 10 by self time")
    print(table([list(row) for row in extra[:10]], ["module", "self ms", "cumulative ms"]))
    goals = [Goal("one-iscsi start-up vs a minimal typer app", ratio(one, typer_app), 1.2)]
    notes = [f"median of {runs} interleaved runs after 2 warm-up rounds, venv python",
             f"beyond the bare interpreter: one-iscsi {1000 * (one - bare):.0f} ms, minimal typer app "
             f"{1000 * (typer_app - bare):.0f} ms ({ratio(one - bare, typer_app - bare):.2f}x)",
             "packages of " + ", ".join(HEAVY) + " imported at start-up: " + (", ".join(heavy) or "none")]
    return report("startup", "start-up time of `one-iscsi iqn parse` vs a minimal typer app and bare python",
                  ["command", "median ms", "min ms", "x typer app", "x python"], rows, goals,
                  figures={"runs": runs, "seconds": times, "median_seconds": medians,
                           "import_top10_ms": [{"module": m, "self": s, "cumulative": c} for m, s, c in top],
                           "extra_modules_vs_typer_app_ms": [{"module": m, "self": s, "cumulative": c}
                                                             for m, s, c in extra],
                           "heavy_imported": heavy},
                  notes=notes, quick=quick)
