"""copy: `one-iscsi image copy IMG DEV` onto an existing device of the
target server, over ssh (HOST=tgtserver, the loopback sshd) and locally
(HOST=localhost). The device is a loop device on a file under /tmp, as big as
the image.

Baselines, interleaved with one-iscsi (A B A B ...), with one-iscsi's block
size and cipher (the first cipher of its COPY_SSH_OPTIONS default):
 * over ssh: `cat IMG | ssh -o Ciphers=C tgtserver dd of=DEV bs=4M conv=fsync`
   (flushed, as one-iscsi flushes before it reports success);
 * locally: `dd if=IMG of=DEV bs=4M conv=fsync`.
Floor, interleaved too: `cat IMG | ssh -o Ciphers=C tgtserver 'cat >
/dev/null'` (ssh alone, nothing written).

Images: random data, 2 GiB (--quick 256 MiB); 90% zeros (random 1 MiB
blocks at random places, 10% of them), 1 GiB (--quick 256 MiB). Before each
copy of the 90%-zero image (one-iscsi's and the pipe's) the device is filled
with a non-zero pattern; after each one-iscsi copy the device must equal the
image byte for byte (no stale data under the zeros). After every copy the
device is fsynced, untimed: the time that takes is shown ("left to flush"),
so that a copy that did not flush shows. Peak memory: `/usr/bin/time -f %M`
around one-iscsi (the largest of one-iscsi and the children it waits for).

Goals: random data >= 0.95x the pipe's throughput, and >= 0.95x local dd's;
the 90%-zero image >= 2x faster than the pipe, byte-exact every time; peak
memory of the 2 GiB copy over ssh <= 64 MiB."""
from __future__ import annotations

import os
import random
import shlex
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from common import (HOSTS, MIB, ONE_ISCSI, Goal, Ratio, copy_cipher, fsync_path, goal_from_ratio, interleave,
                    median, one_iscsi_env, quiet, rate, report, run_quietly, scratch, spread, ssh_options, sshd,
                    unflushed, write_random)

HOST = HOSTS[0]
CHUNK = 4 * MIB
PATTERN = bytes([0xA5]) * CHUNK
OURS = "one-iscsi"


@contextmanager
def device(work: Path, name: str, size: int) -> Iterator[str]:
    """A loop device of size bytes on a file in work (the file itself if losetup fails)."""
    backing = work / f"{name}.dev"
    with open(backing, "wb") as file:
        file.truncate(size)
    done = quiet(["losetup", "-f", "--show", str(backing)])
    if done.returncode != 0:
        print(f"note: losetup failed ({done.stderr.strip()}): copying onto the plain file {backing}")
        yield str(backing)
        return
    try:
        fill(done.stdout.strip(), size)  # allocated from the start: the first copy pays no more than the others
        yield done.stdout.strip()
    finally:
        quiet(["losetup", "-d", done.stdout.strip()])


def write_mostly_zeros(path: Path, size: int, seed: int = 6) -> Path:
    """10% of the 1 MiB blocks random, at random places; the rest zeros (a hole)."""
    blocks = size // MIB
    with open(path, "wb") as file:
        file.truncate(size)
        for block in random.Random(seed).sample(range(blocks), blocks // 10):
            file.seek(block * MIB)
            file.write(os.urandom(MIB))
    return path


def fill(dev: str, size: int) -> None:
    """The device filled with a non-zero pattern, flushed."""
    fd = os.open(dev, os.O_WRONLY)
    try:
        for offset in range(0, size, CHUNK):
            os.pwrite(fd, PATTERN, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


class Group:
    """Copiers of one image onto one device, run interleaved; the one-iscsi
    runs are checked (device == image) and their peak memory read."""

    def __init__(self, image: Path, dev: str, size: int, prefill: bool, memory: Path):
        self.image, self.dev, self.size, self.prefill, self.memory = image, dev, size, prefill, memory
        self.cases: dict[str, list] = {}
        self.peaks_mib: list[float] = []
        self.left_to_flush: dict[str, list[float]] = {}
        self.checked = self.mismatches = 0

    def shell(self, name: str, pipeline: str) -> None:
        self.cases[name] = ["sh", "-c", pipeline]

    def one_iscsi(self, env: dict) -> None:
        self.cases[OURS] = (["/usr/bin/time", "-f", "%M", "-o", str(self.memory), ONE_ISCSI, "--config", "/dev/null",
                             "image", "copy", str(self.image), self.dev], env)

    def before(self, name: str) -> None:
        if self.prefill and name != "floor":
            fill(self.dev, self.size)

    def after(self, name: str) -> None:
        self.left_to_flush.setdefault(name, []).append(fsync_path(self.dev))
        if name == OURS:
            self.peaks_mib.append(int(self.memory.read_text().split()[-1]) / 1024)
            self.checked += 1
            self.mismatches += quiet(["cmp", "-s", str(self.image), self.dev], timeout=600).returncode != 0

    def measure(self, runs: int) -> dict[str, list[float]]:
        def case(name, spec):
            argv, env = spec if isinstance(spec, tuple) else (spec, None)
            return lambda: run_quietly(argv, name, timeout=1800, env=env)

        return interleave({name: case(name, spec) for name, spec in self.cases.items()}, runs,
                          before=self.before, after=self.after)


def run(quick: bool) -> dict:
    random_size, zeros_size = (256 * MIB, 256 * MIB) if quick else (2048 * MIB, 1024 * MIB)
    runs = 3 if quick else 7
    cipher = copy_cipher()
    with scratch("copy") as work, ExitStack() as stack:
        server = stack.enter_context(sshd(work / "sshd"))
        big = stack.enter_context(device(work, "random", random_size))
        small = stack.enter_context(device(work, "zeros", zeros_size))
        memory = work / "peak-kib"
        ssh = shlex.join([*shlex.split(server.ssh), *ssh_options(), "-o", f"Ciphers={cipher}", HOST])
        random_raw = write_random(work / "random.raw", random_size)
        zeros_raw = write_mostly_zeros(work / "zeros90.raw", zeros_size)
        q = shlex.quote

        over_ssh = Group(random_raw, big, random_size, False, memory)
        over_ssh.shell("pipe", f"cat {q(str(random_raw))} | {ssh} {q(f'dd of={q(big)} bs=4M conv=fsync')}")
        over_ssh.one_iscsi(one_iscsi_env(work, ssh=server.ssh, HOST=HOST))
        over_ssh.shell("floor", f"cat {q(str(random_raw))} | {ssh} 'cat > /dev/null'")
        local = Group(random_raw, big, random_size, False, memory)
        local.shell("dd", f"dd if={q(str(random_raw))} of={q(big)} bs=4M conv=fsync status=none")
        local.one_iscsi(one_iscsi_env(work, HOST="localhost"))
        zeros = Group(zeros_raw, small, zeros_size, True, memory)
        zeros.shell("pipe", f"cat {q(str(zeros_raw))} | {ssh} {q(f'dd of={q(small)} bs=4M conv=fsync')}")
        zeros.one_iscsi(one_iscsi_env(work, ssh=server.ssh, HOST=HOST))
        groups = {"random, over ssh": over_ssh, "random, local": local, "90% zeros, over ssh": zeros}
        times = {title: group.measure(runs) for title, group in groups.items()}

    mib, zeros_mib = f"{random_size // MIB} MiB", f"{zeros_size // MIB} MiB"
    speed_goals = {  # group: its goal's text, limit and baseline
        "random, over ssh": (f"random {mib} over ssh: throughput vs the pipe", 0.95, "pipe"),
        "random, local": (f"random {mib} locally: throughput vs dd", 0.95, "dd"),
        "90% zeros, over ssh": (f"{zeros_mib}, 90% zeros, over ssh: speed-up over the pipe", 2, "pipe")}
    notes = [f"min / median / max of {runs} interleaved rounds; device: a loop device on a file in /tmp, as big "
             "as the image",
             f"pipe: `cat IMG | ssh -o Ciphers={cipher} {HOST} dd of=DEV bs=4M conv=fsync`; dd: `dd if=IMG of=DEV "
             f"bs=4M conv=fsync`; floor: `cat IMG | ssh -o Ciphers={cipher} {HOST} 'cat > /dev/null'`",
             "x baseline: the baseline's time / this one's (above 1: faster), ratio of medians and per-round range",
             "left to flush: an untimed fsync of the device right after the copy (large: the copy did not flush)",
             f"peak memory: /usr/bin/time -f %M; median over all one-iscsi runs: {median(over_ssh.peaks_mib):.0f} MiB "
             "over ssh"]
    rows, goals = [], []
    floor = (f"ssh alone {rate(random_size, times['random, over ssh']['floor'])}; "
             f"local dd {rate(random_size, times['random, local']['dd'])}")
    for title, (text, limit, base) in speed_goals.items():
        group, seconds = groups[title], times[title]
        for name, values in seconds.items():
            rows.append([title, name, rate(group.size, values), Ratio.of(seconds[base], values).text,
                         spread(group.left_to_flush[name], 1000),
                         spread(group.peaks_mib) if name == OURS else "-",
                         f"{group.checked - group.mismatches}/{group.checked}" if name == OURS else "-"])
        if unflushed(group.left_to_flush[OURS], group.left_to_flush[base]):
            text += " (but it left data unflushed: see the notes)"
            notes.append(f"{title}: one-iscsi left data unflushed (the fsync after it took "
                         f"{spread(group.left_to_flush[OURS], 1000)} ms)")
        goals.append(goal_from_ratio(text, Ratio.of(seconds[base], seconds[OURS]), limit, at_least=True,
                                     ours=rate(group.size, seconds[OURS]),
                                     baseline=f"{base} {rate(group.size, seconds[base])}",
                                     floor=floor if title.endswith("over ssh") else ""))
    goals += [Goal("one-iscsi copies after which the device differed from the image (pre-filled with 0xA5)",
                   sum(group.mismatches for group in groups.values()), 0, unit="",
                   ours=f"{sum(group.checked for group in groups.values())} copies compared byte for byte"),
              Goal(f"peak memory of the {mib} copy over ssh (one-iscsi and its children)",
                   round(max(over_ssh.peaks_mib), 1), 64, unit=" MiB", ours=spread(over_ssh.peaks_mib, unit="MiB"))]
    return report("copy", f"`one-iscsi image copy` vs `cat IMG | ssh -o Ciphers={cipher} HOST dd bs=4M conv=fsync`",
                  ["image", "copier", "MiB/s", "x baseline speed", "left to flush ms", "peak MiB", "identical"],
                  rows, goals,
                  figures={"runs": runs, "random_bytes": random_size, "zeros_bytes": zeros_size, "cipher": cipher,
                           "seconds": times, "peak_mib": {t: g.peaks_mib for t, g in groups.items()},
                           "left_to_flush_seconds": {t: g.left_to_flush for t, g in groups.items()}},
                  notes=notes, quick=quick)
