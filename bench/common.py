"""What the benchmarks share: the daemons they start (a private tgtd, a
loopback sshd), the environment that points one-iscsi at them, interleaved
timing (A B A B ...), goals, and the report (a table on stdout, JSON in
bench/results/<name>.json).

The daemons are those of the tests (tests/support/daemons.py)."""
from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "tests"))  # after bench/: tests/ has packages named like benchmarks (e2e)

from support import daemons  # noqa: E402
from support.commands import quiet  # noqa: E402
from support.daemons import HOSTS, Sshd, Tgtd, tgtd  # noqa: E402
from support.driver import action_xml, remote  # noqa: E402
from support.paths import BIN, DATA  # noqa: E402

PYTHON = str(BIN / "python")
ONE_ISCSI = str(BIN / "one-iscsi")
RESULTS = REPO / "bench" / "results"
MIB = 1024 * 1024

__all__ = ["DATA", "HOSTS", "Sshd", "Tgtd", "action_xml", "quiet", "remote", "tgtd"]  # from support


# --- daemons and places -------------------------------------------------------------------

@contextmanager
def scratch(name: str) -> Iterator[Path]:
    """A temporary directory under /tmp, removed at the end."""
    with tempfile.TemporaryDirectory(prefix=f"one-iscsi-bench-{name}-", dir="/tmp") as directory:
        yield Path(directory)


@contextmanager
def sshd(directory: Path) -> Iterator[Sshd]:
    """The tests' loopback sshd (support.daemons.sshd), reached as the
    aliases in HOSTS, allowing the many connections at once of a benchmark."""
    with daemons.sshd(directory, max_startups=100) as server:
        yield server


def one_iscsi_env(work: Path, daemon: Optional[Tgtd] = None, ssh: Optional[str] = None,
                  **settings: str) -> dict[str, str]:
    """The environment of a one-iscsi run: this process's environment without
    any ONE_ISCSI_* of the machine, pointed at the private daemons, with its
    config files, lock and file-backend pool in work. SUDO is empty (root;
    the baselines use no sudo either)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ONE_ISCSI_")}
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    values = {"CONF_DIR": str(work / "tgt-conf.d" / "one-iscsi"), "LOCK_FILE": str(work / "one-iscsi.lock"),
              "BACKEND": "file", "POOL_DIR": str(work / "pool"), "SUDO": ""}
    if daemon is not None:
        values.update(TGTADM=f"tgtadm -C {daemon.control}", TGT_ADMIN=f"tgt-admin -C {daemon.control}")
    if ssh is not None:
        values["SSH"] = ssh
    values.update(settings)
    env.update({f"ONE_ISCSI_{key}": value for key, value in values.items()})
    return env


@dataclass
class DriverLab:
    """The OpenNebula remotes pointed at a private tgtd on `tgtserver` and at
    hosts node1/node2, all aliases of one loopback sshd. The hosts' kernels
    have no iSCSI initiator: iscsiadm is tests/data/fake-iscsiadm (login is
    simulated; it links the LUN's backing file where udev would link the disk)."""
    work: Path
    tgtd: Tgtd
    sshd: Sshd
    env: dict

    @property
    def initiator(self) -> Path:
        return self.work / "initiator"

    def export(self, iqn: str, backing: Path) -> None:
        """Tell the stand-in initiator which file a login to iqn reaches."""
        (self.initiator / "luns" / iqn).write_text(str(backing))

    def backing(self, image_id: int) -> Path:
        return self.work / "pool" / "vg-one" / f"lv-one-{image_id}"

    def remote(self, driver: str, action: str, *args: str, ssh: Optional[str] = None) -> str:
        """Run remotes/DRIVER/iscsi/ACTION ARGS as OpenNebula does; its stdout."""
        env = {**self.env, "ONE_ISCSI_SSH": ssh} if ssh else self.env
        return check(remote(driver, action, *args, env=env), f"{driver}/{action}").stdout

    def ssh(self, host: str, script: str, stdin=None) -> None:
        """Run a shell script on host, over one ssh connection (the baselines)."""
        done = subprocess.run([*shlex.split(self.sshd.ssh), host, script], stdin=stdin,
                              capture_output=True, text=True, timeout=300)
        check(done, f"ssh {host}")


@contextmanager
def driver_lab(work: Path) -> Iterator[DriverLab]:
    with tgtd() as daemon, sshd(work / "sshd") as server:
        (work / "initiator" / "luns").mkdir(parents=True)
        env = one_iscsi_env(work, daemon, server.ssh, HOST=HOSTS[0], NO_ISCSI="front-end",
                            ISCSIADM=f"{DATA / 'fake-iscsiadm'} {work / 'initiator'}",
                            DEVICE_DIR=str(work / "initiator" / "by-path"))
        yield DriverLab(work, daemon, server, env)


def check(done: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    """A step of a benchmark must work: a failure is a crash, with its stderr."""
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


# --- timing ---------------------------------------------------------------------------------

def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def interleave(cases: Mapping[str, Callable[[], object]], runs: int, warmup: int = 0,
               before: Optional[Callable[[str], object]] = None,
               after: Optional[Callable[[str], object]] = None) -> dict[str, list[float]]:
    """Run the cases in turn (A B C A B C ...), `runs` times each, after
    `warmup` unmeasured rounds; before/after(name) run untimed around each."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(warmup + runs):
        for name, case in cases.items():
            if before:
                before(name)
            elapsed = timed(case)
            if after:
                after(name)
            if round_ >= warmup:
                times[name].append(elapsed)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# --- goals and reports ----------------------------------------------------------------------

@dataclass
class Goal:
    """A target for a measured ratio; reported, never asserted."""
    text: str
    measured: Optional[float]  # None: not measured
    limit: float
    at_least: bool = False     # the measured value must be >= limit (else <=)
    unit: str = "x"

    @property
    def met(self) -> Optional[bool]:
        if self.measured is None:
            return None
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT MET", None: "not measured"}[self.met]

    @property
    def measured_text(self) -> str:
        if self.measured is None:
            return "-"
        return f"{self.measured:.2f}{self.unit}" if self.unit == "x" else f"{self.measured:g}{self.unit}"

    @property
    def limit_text(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.limit:g}{self.unit}"

    def line(self) -> str:
        return f"goal {self.verdict:>12}: {self.text} (measured {self.measured_text}, goal {self.limit_text})"


def fmt(value: object) -> str:
    """A cell: floats with three significant digits, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    from tabulate import tabulate

    return tabulate([[fmt(cell) for cell in row] for row in rows], headers=headers, tablefmt="simple",
                    disable_numparse=True)


def report(name: str, title: str, headers: Sequence[str], rows: Sequence[Sequence[object]],
           goals: Sequence[Goal] = (), figures: Optional[dict] = None, notes: Sequence[str] = (),
           quick: bool = False) -> dict:
    """Print the table, the notes and the goals; write bench/results/<name>.json."""
    print(f"\n== {name}: {title}")
    print(table(rows, headers))
    for note in notes:
        print(f"note: {note}")
    for goal in goals:
        print(goal.line())
    result = {"name": name, "title": title, "quick": quick,
              "table": {"headers": list(headers), "rows": [list(row) for row in rows]},
              "goals": [{**asdict(goal), "met": goal.met} for goal in goals],
              "notes": list(notes), "figures": figures or {}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = RESULTS / f"{name}.json.tmp"
    partial.write_text(json.dumps(result, indent=2, default=str) + "\n")
    partial.replace(RESULTS / f"{name}.json")
    return result


def ratio(a: float, b: float) -> Optional[float]:
    return a / b if b else None
