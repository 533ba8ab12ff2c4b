"""copy: writing an image onto an existing device on the target server over
ssh (the loopback sshd), with `one-iscsi --config /dev/null image copy SRC
DEV --host tgtserver`.

Baseline, interleaved with it: the original driver's pipeline
`cat IMG | ssh tgtserver dd of=DEV bs=64k` (no flush to disk at the end).
The device is a loop device backed by a file in a temporary directory under
/tmp (a plain file if losetup is not available); the 90%-zero image is also
copied onto a plain file (the file backend's kind of device).

Images (1 GiB; 256 MiB with --quick): random data; 90% zeros (random 1 MiB
blocks at random places, 10% of them); the latter converted to qcow2 (the
baseline then sends the equivalent raw image). Before each one-iscsi copy
the device is filled with a non-zero pattern, and after it the device must
be byte-identical to the image, zeros included (stale data would show).
Every device is flushed (fsync) after every copy, untimed, so that no copy
pays for the previous one's writeback. Peak memory of the one-iscsi process
(and of the children it waits for) is `/usr/bin/time -f %M`.

Goals: random image >= 0.95x the baseline's throughput; 90%-zero image >= 3x
faster than the baseline; qcow2 peak memory <= 64 MiB."""
from __future__ import annotations

import os
import random
import shlex
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from common import (HOSTS, MIB, ONE_ISCSI, Goal, check, interleave, median, one_iscsi_env, quiet, report,
                    scratch, sshd)

HOST = HOSTS[0]
CHUNK = 4 * MIB
PATTERN = bytes([0xA5]) * CHUNK
OURS, BASELINE = "one-iscsi image copy", "cat | ssh dd bs=64k"


def image_copy_available() -> bool:
    return quiet([ONE_ISCSI, "image", "copy", "--help"]).returncode == 0


@contextmanager
def device(work: Path, size: int) -> Iterator[tuple[str, str]]:
    """(path, kind) of a device of size bytes: a loop device on a file in work."""
    backing = work / "device.img"
    with open(backing, "wb") as file:
        file.truncate(size)
    done = quiet(["losetup", "-f", "--show", str(backing)])
    if done.returncode != 0:
        yield str(backing), "plain file (losetup failed: " + done.stderr.strip() + ")"
        return
    loop = done.stdout.strip()
    try:
        yield loop, f"loop device {loop} on a file in /tmp"
    finally:
        quiet(["losetup", "-d", loop])


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as file:
        for _ in range(size // CHUNK):
            file.write(os.urandom(CHUNK))


def write_mostly_zeros(path: Path, size: int, seed: int = 6) -> None:
    """10% of the 1 MiB blocks random, at random places; the rest zeros (a hole)."""
    blocks = size // MIB
    with open(path, "wb") as file:
        file.truncate(size)
        for block in random.Random(seed).sample(range(blocks), blocks // 10):
            file.seek(block * MIB)
            file.write(os.urandom(MIB))


def fill(dev: str, size: int) -> None:
    """Fill the device with a non-zero pattern, flushed."""
    fd = os.open(dev, os.O_WRONLY)
    try:
        for offset in range(0, size, CHUNK):
            os.pwrite(fd, PATTERN, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def flush(dev: str) -> None:
    fd = os.open(dev, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Copier:
    """One way of copying: a baseline pipeline, or one-iscsi (filled device
    before, checked device and peak memory after)."""
    label: str
    argv: list
    dev: str
    ours: bool
    expected: Optional[Path] = None  # what the device must hold afterwards
    env: Optional[dict] = None
    peaks_mib: list = field(default_factory=list)
    mismatches: int = 0


def baseline(label: str, raw: Path, dev: str, ssh: str, flags: str = "") -> Copier:
    pipeline = f"cat {shlex.quote(str(raw))} | {ssh} {HOST} dd of={shlex.quote(dev)} bs=64k{flags}"
    return Copier(label, ["sh", "-c", pipeline], dev, ours=False)


def one_iscsi(label: str, source: Path, raw: Path, dev: str, env: dict, memory: Path) -> Copier:
    argv = ["/usr/bin/time", "-f", "%M", "-o", str(memory),
            ONE_ISCSI, "--config", "/dev/null", "image", "copy", str(source), dev, "--host", HOST]
    return Copier(label, argv, dev, ours=True, expected=raw, env=env)


def measure(copiers: list[Copier], size: int, runs: int, memory: Path) -> dict:
    """Interleaved runs of the copiers; {label: [seconds]}."""
    by_label = {copier.label: copier for copier in copiers}

    def before(label: str) -> None:
        if by_label[label].ours:
            fill(by_label[label].dev, size)

    def after(label: str) -> None:
        copier = by_label[label]
        flush(copier.dev)
        if copier.ours:
            copier.peaks_mib.append(int(memory.read_text().split()[-1]) / 1024)
            done = quiet(["cmp", "-s", str(copier.expected), copier.dev], timeout=300)
            copier.mismatches += done.returncode != 0

    return interleave({copier.label: (lambda copier=copier: check(subprocess.run(
        copier.argv, capture_output=True, text=True, timeout=900, env=copier.env), copier.label))
        for copier in copiers}, runs, before=before, after=after)


def run(quick: bool) -> dict:
    size, runs = (256 if quick else 1024) * MIB, 5
    ours = image_copy_available()
    with scratch("copy") as work, sshd(work / "sshd") as server, device(work, size) as (dev, kind):
        env, memory = one_iscsi_env(work, ssh=server.ssh), work / "peak-rss"
        plain = str(work / "plain-device.img")  # the file backend's kind of device
        with open(plain, "wb") as file:
            file.truncate(size)
        random_raw, zeros_raw, zeros_qcow2 = work / "random.raw", work / "zeros90.raw", work / "zeros90.qcow2"
        write_random(random_raw, size)
        write_mostly_zeros(zeros_raw, size)
        check(quiet(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(zeros_raw), str(zeros_qcow2)],
                    timeout=300), "qemu-img convert")
        groups = {  # image: copiers run interleaved; the first is the baseline of the group
            "random raw": [baseline("baseline", random_raw, dev, server.ssh),
                           baseline("baseline + conv=fsync", random_raw, dev, server.ssh, " conv=fsync")],
            "90% zeros": [baseline("baseline", zeros_raw, dev, server.ssh)],
        }
        if ours:
            groups["random raw"].append(one_iscsi("one-iscsi raw", random_raw, random_raw, dev, env, memory))
            groups["90% zeros"] += [one_iscsi("one-iscsi raw", zeros_raw, zeros_raw, dev, env, memory),
                                    one_iscsi("one-iscsi qcow2", zeros_qcow2, zeros_raw, dev, env, memory),
                                    one_iscsi("one-iscsi raw, plain file", zeros_raw, zeros_raw, plain, env,
                                              memory)]
        times = {image: measure(copiers, size, runs, memory) for image, copiers in groups.items()}
    rows, medians = [], {}
    for image, copiers in groups.items():
        base = median(times[image]["baseline"])
        for copier in copiers:
            seconds = medians[image, copier.label] = median(times[image][copier.label])
            checked = len(copier.peaks_mib)
            rows.append([image, copier.label, seconds, size / MIB / seconds, base / seconds,
                         max(copier.peaks_mib) if checked else None,
                         f"{checked - copier.mismatches}/{checked}" if checked else "-"])
    ratio_of = lambda image, label: medians[image, "baseline"] / medians[image, label]  # noqa: E731
    peaks = {(image, copier.label): max(copier.peaks_mib) for image, copiers in groups.items()
             for copier in copiers if copier.peaks_mib}
    mismatches = sum(copier.mismatches for copiers in groups.values() for copier in copiers)
    goals = [Goal("random raw image: one-iscsi throughput vs the baseline",
                  ratio_of("random raw", "one-iscsi raw") if ours else None, 0.95, at_least=True),
             Goal("90%-zero raw image: one-iscsi speed-up over the baseline",
                  ratio_of("90% zeros", "one-iscsi raw") if ours else None, 3, at_least=True),
             Goal("90%-zero qcow2 image: peak memory of one-iscsi",
                  round(peaks["90% zeros", "one-iscsi qcow2"], 1) if ours else None, 64, unit=" MiB"),
             Goal("one-iscsi copies after which the device differed from the image",
                  mismatches if ours else None, 0, unit="")]
    notes = [f"{size // MIB} MiB images, median of {runs} interleaved runs per image, device: {kind}",
             "baseline: `cat IMG | ssh tgtserver dd of=DEV bs=64k` (no flush); `+ conv=fsync` flushes like "
             "one-iscsi does (informational); the flush after each copy is untimed for all",
             "the 90%-zero qcow2 image is compared with the baseline sending the equivalent raw image",
             "plain file: the device is a regular file (as the file backend's), not the loop device; "
             "same baseline (to the loop device)",
             "identical: runs after which the device (pre-filled with 0xA5) equalled the image, zeros included"]
    if not ours:
        notes.append("`one-iscsi image copy` does not exist yet: only the baselines were measured")
    figures = {"size_bytes": size, "runs": runs, "device": kind, "seconds": times,
               "peak_rss_mib": {f"{image}/{label}": peak for (image, label), peak in peaks.items()}}
    return report("copy", f"image copy to a device over ssh vs `cat IMG | ssh {HOST} dd of=DEV bs=64k`",
                  ["image", "copier", "median s", "MiB/s", "x baseline speed", "peak RSS MiB", "identical"],
                  rows, goals, figures, notes, quick=quick)
