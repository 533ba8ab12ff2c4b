"""What the benchmarks share: the daemons (the tests' own, tests/support), the
environment that points one-iscsi at them, interleaved timing (A B A B ...),
min / median / max figures, paired per-round ratios, goals, and the report
(a table on stdout, JSON in bench/results/<name>.json).

Every figure is measured in the run that reports it; nothing is typed in."""
from __future__ import annotations

import json
import os
import shlex
import signal
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
from support.driver import action_xml, random_image, remote  # noqa: E402
from support.paths import BIN, DATA  # noqa: E402

PYTHON = str(BIN / "python")
ONE_ISCSI = str(BIN / "one-iscsi")
RESULTS = REPO / "bench" / "results"
MIB = 1024 * 1024
OPENNEBULA_VERSION = "6.6"  # the remotes are called in the argument form (base64 XML, ID)

__all__ = ["DATA", "HOSTS", "Sshd", "Tgtd", "action_xml", "quiet", "random_image", "remote", "tgtd"]  # support

# the floor of any typer command line: one command, printing its argument
MINIMAL_TYPER_APP = '''import typer

app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False, add_completion=False)


@app.command()
def host(iqn: str) -> None:
    print(iqn.split(":", 1)[1].rsplit(".", 2)[0])


app()
'''


# --- daemons, places, settings --------------------------------------------------------------

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
              "BACKEND": "file", "POOL_DIR": str(work / "pool"), "SUDO": "",
              "OPENNEBULA_VERSION": OPENNEBULA_VERSION}
    if daemon is not None:
        values.update(TGTADM=f"tgtadm -C {daemon.control}", TGT_ADMIN=f"tgt-admin -C {daemon.control}",
                      PORTAL_PORT=str(daemon.port))
    if ssh is not None:
        values["SSH"] = ssh
    values.update(settings)
    env.update({f"ONE_ISCSI_{key}": value for key, value in values.items()})
    return env


def ssh_options() -> list[str]:
    """The options one-iscsi gives ssh for every connection (oneiscsi/run.py),
    for the `ssh HOST true` and plain-ssh baselines."""
    from oneiscsi import config

    return ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={config.DEFAULTS['CONNECT_TIMEOUT']}"]


def copy_cipher() -> str:
    """The cipher one-iscsi's COPY_SSH_OPTIONS default asks for first
    (`Ciphers=^a,b` prepends a and b to ssh's list: a is used)."""
    from oneiscsi import config

    options = shlex.split(config.DEFAULTS["COPY_SSH_OPTIONS"])
    for option in options:
        if option.lower().startswith("ciphers="):
            return option.split("=", 1)[1].lstrip("^+-").split(",")[0]
    raise RuntimeError(f"COPY_SSH_OPTIONS names no cipher: {options}")


def counting_ssh(path: Path, log: Path, ssh: str) -> str:
    """An ssh wrapper (at path) that logs, per invocation, the first argument
    that is a host alias of HOSTS ('?' if none), then execs ssh. Set as
    ONE_ISCSI_SSH and used by the plain-ssh baselines alike."""
    aliases = "|".join(HOSTS)
    path.write_text("#!/bin/sh\nhost='?'\n"
                    f'for arg; do case $arg in {aliases}) host=$arg; break ;; esac; done\n'
                    f'echo "$host" >> {shlex.quote(str(log))}\nexec {ssh} "$@"\n')
    path.chmod(0o755)
    return str(path)


@dataclass
class DriverLab:
    """The OpenNebula remotes pointed at a private tgtd on `tgtserver` and at
    hosts node1/node2, all aliases of one loopback sshd, reached through a
    connection-counting ssh wrapper (connections()). The hosts' kernels have
    no iSCSI initiator: iscsiadm is tests/data/fake-iscsiadm (login is
    simulated; it links the LUN's backing file where udev would link the disk)."""
    work: Path
    tgtd: Tgtd
    sshd: Sshd
    env: dict
    ssh_command: str  # the counting wrapper
    log: Path

    @property
    def initiator(self) -> Path:
        return self.work / "initiator"

    @property
    def iscsiadm(self) -> str:
        return f"{DATA / 'fake-iscsiadm'} {self.initiator}"

    def export(self, iqn: str, backing: Path) -> None:
        """Tell the stand-in initiator which file a login to iqn reaches."""
        (self.initiator / "luns" / iqn).write_text(str(backing))

    def backing(self, image_id: int) -> Path:
        return self.work / "pool" / "vg-one" / f"lv-one-{image_id}"

    def remote(self, driver: str, action: str, *args: str, **settings: str) -> str:
        """Run remotes/DRIVER/iscsi/ACTION ARGS as OpenNebula does; its stdout."""
        env = {**self.env, **{f"ONE_ISCSI_{key}": value for key, value in settings.items()}}
        return check(remote(driver, action, *args, env=env, timeout=600), f"{driver}/{action}").stdout

    def ssh(self, host: str, script: str, stdin=None, options: Sequence[str] = ()) -> None:
        """Run a shell script on host over one ssh connection (the baselines),
        through the counting wrapper, with one-iscsi's ssh options."""
        run_quietly([self.ssh_command, *ssh_options(), *options, host, script], f"ssh {host}", timeout=600,
                    stdin=stdin if stdin is not None else subprocess.DEVNULL)

    def connections(self) -> dict[str, int]:
        """{host: ssh connections} since the last call."""
        hosts = self.log.read_text().split() if self.log.exists() else []
        self.log.write_text("")
        return {host: hosts.count(host) for host in sorted(set(hosts))}


@contextmanager
def driver_lab(work: Path, **settings: str) -> Iterator[DriverLab]:
    with tgtd() as daemon, sshd(work / "sshd") as server:
        (work / "initiator" / "luns").mkdir(parents=True)
        log = work / "ssh.log"
        ssh = counting_ssh(work / "counting-ssh", log, server.ssh)
        env = one_iscsi_env(work, daemon, ssh, HOST=HOSTS[0], NO_ISCSI="front-end",
                            ISCSIADM=f"{DATA / 'fake-iscsiadm'} {work / 'initiator'}",
                            DEVICE_DIR=str(work / "initiator" / "by-path"),
                            COPY_PORTAL=daemon.portal,  # where this machine reaches tgtserver's portal
                            **settings)
        yield DriverLab(work, daemon, server, env, ssh, log)


def check(done: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    """A step of a benchmark must work: a failure is a crash, with its stderr."""
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {str(done.stderr).strip()[-2000:]}")
    return done


def run_quietly(argv: Sequence[str], what: str, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    """Run argv (output captured) in a process group of its own, killed whole
    if anything goes wrong, SIGTERM included: no pipeline outlives the bench."""
    with subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, **kwargs) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    return check(subprocess.CompletedProcess(list(argv), process.returncode, out, err), what)


def typer_app(work: Path) -> str:
    """The minimal typer app, written to work: the floor of a typer CLI."""
    app = work / "minimal_typer.py"
    app.write_text(MINIMAL_TYPER_APP)
    return str(app)


def write_random(path: Path, size: int) -> Path:
    """A file of size bytes of random data, written 4 MiB at a time."""
    with open(path, "wb") as file:
        for _ in range(size // (4 * MIB)):
            file.write(os.urandom(4 * MIB))
    return path


def fsync_path(path: str) -> float:
    """fsync a device or file; seconds it took (what a copy left unflushed)."""
    start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def unflushed(left: Sequence[float], baseline_left: Sequence[float]) -> bool:
    """Whether a copy left data unflushed: the fsync after it took (median)
    over 10 ms and 5x the fsync after the flushed baseline."""
    return median(left) > max(0.010, 5 * median(baseline_left))


# --- timing ---------------------------------------------------------------------------------

def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def interleave(cases: Mapping[str, Callable[[], object]], runs: int, warmup: int = 0,
               before: Optional[Callable[[str], object]] = None,
               after: Optional[Callable[[str], object]] = None) -> dict[str, list[float]]:
    """Run the cases in turn (A B C A B C ...), `runs` rounds, after `warmup`
    unmeasured rounds; before/after(name) run untimed around each case."""
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


def spread(values: Sequence[float], scale: float = 1.0, unit: str = "") -> str:
    """'min / median / max unit' of values * scale."""
    low, mid, high = (value * scale for value in (min(values), median(values), max(values)))
    return f"{fmt(low)} / {fmt(mid)} / {fmt(high)}{' ' + unit if unit else ''}"


def rate(size: int, seconds: Sequence[float]) -> str:
    """Throughput of runs copying size bytes, MiB/s, min / median / max."""
    return spread([size / MIB / s for s in seconds], unit="MiB/s")


@dataclass
class Ratio:
    """A comparison of two interleaved series: the ratio of their medians and
    the per-round ratios (round i of one against round i of the other)."""
    of_medians: float
    rounds: list

    @classmethod
    def of(cls, top: Sequence[float], bottom: Sequence[float]) -> "Ratio":
        return cls(median(top) / median(bottom), [t / b for t, b in zip(top, bottom)])

    @property
    def text(self) -> str:
        return f"{self.of_medians:.2f}x (rounds {min(self.rounds):.2f}..{max(self.rounds):.2f})"


# --- goals and reports ----------------------------------------------------------------------

@dataclass
class Goal:
    """A goal of the issue, with what was measured for it; reported, never asserted."""
    text: str
    measured: Optional[float]  # the figure judged; None: not measured
    limit: float
    at_least: bool = False     # the measured value must be >= limit (else <=)
    unit: str = "x"
    ours: str = ""             # one-iscsi's figure, min / median / max
    baseline: str = ""         # the baseline's figure, min / median / max
    floor: str = ""            # what any tool must pay at least
    rounds: str = ""           # the spread of the judged figure (per-round ratios)

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
        text = f"{self.measured:.2f}x" if self.unit == "x" else f"{fmt(float(self.measured))}{self.unit}"
        return f"{text} ({self.rounds})" if self.rounds else text

    @property
    def limit_text(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.limit:g}{self.unit}"

    def line(self) -> str:
        return f"goal {self.verdict:>8}: {self.text}: {self.measured_text}, goal {self.limit_text}"


def goal_from_ratio(text: str, ratio: Ratio, limit: float, at_least: bool = False, **figures: str) -> Goal:
    rounds = f"rounds {min(ratio.rounds):.2f}..{max(ratio.rounds):.2f}"
    return Goal(text, ratio.of_medians, limit, at_least, rounds=rounds, **figures)


def fmt(value: object) -> str:
    """A cell: floats with three significant digits (whole above 100), None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def table(rows: Sequence[Sequence[object]], headers: Sequence[str], tablefmt: str = "simple") -> str:
    from tabulate import tabulate

    return tabulate([[fmt(cell) for cell in row] for row in rows], headers=headers, tablefmt=tablefmt,
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
    write_json(name, result)
    return result


def write_json(name: str, value: object) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = RESULTS / f"{name}.json.tmp"
    partial.write_text(json.dumps(value, indent=2, default=str) + "\n")
    partial.replace(RESULTS / f"{name}.json")
