"""copy_via: registering an image with `datastore cp` (remotes/datastore/iscsi/cp,
as OpenNebula calls it) over the loopback sshd, the data going over ssh
(COPY_VIA=ssh) or written from the front-end through the target's own portal
with qemu-img/libiscsi (COPY_VIA=iscsi; COPY_PORTAL is the private tgtd's
127.0.0.1:PORT). A 512 MiB random image (--quick 128 MiB); file backend.

Interleaved with it:
 * the baseline, the ssh pipe: `cat IMG | ssh -o Ciphers=C tgtserver dd
   of=FILE bs=4M conv=fsync` onto a fresh sparse file in the same pool (data
   only: no target is made);
 * the reference: `qemu-img convert -n -f raw -O raw IMG
   iscsi://127.0.0.1:PORT/IQN/1` onto an existing target whose LUN is a file
   made sparse again before each run.
After each run the written file is fsynced (untimed, shown as "left to
flush") and, for the cp runs and the reference, compared with the image.
Goal: cp with COPY_VIA=iscsi >= 1.5x faster than the ssh pipe.

Whether the iscsi case really went through iSCSI: `one-iscsi config show`
must know COPY_VIA, and an untimed probe cp with COPY_VIA=iscsi must be seen
by tgtd as a session (polled). If either says no, the goal is "not measured"
and a note says why (one-iscsi ignores settings it does not know, and copies
over ssh)."""
from __future__ import annotations

import json
import os
import shlex
import threading
from itertools import count

from common import (HOSTS, MIB, ONE_ISCSI, Ratio, action_xml, copy_cipher, driver_lab, fsync_path,
                    goal_from_ratio, interleave, quiet, rate, report, run_quietly, scratch, spread, ssh_options,
                    unflushed, write_random)

HOST = HOSTS[0]
REFERENCE_IQN = "iqn.2012-02.org.opennebula:bench.reference"
REFERENCE_TID = "900"
PIPE, VIA_SSH, VIA_ISCSI, QEMU = "ssh pipe", "cp COPY_VIA=ssh", "cp COPY_VIA=iscsi", "qemu-img convert"


def knows_copy_via(env: dict) -> bool:
    done = run_quietly([ONE_ISCSI, "config", "show", "--json"], "one-iscsi config show", env=env)
    return any(entry["key"] == "COPY_VIA" for entry in json.loads(done.stdout))


def sessions_seen(lab, work) -> bool:
    """Whether tgtd had a session while a cp with COPY_VIA=iscsi ran (untimed probe)."""
    seen, done = [], threading.Event()

    def poll():
        while not done.is_set() and not seen:
            shown = lab.tgtd.tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target").stdout
            if "Initiator:" in shown:  # an I_T nexus (the reference target has none now)
                seen.append(True)
            done.wait(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        iqn = lab.remote("datastore", "cp", action_xml({"PATH": str(work / "image.raw")}), "1", COPY_VIA="iscsi")
    finally:
        done.set()
        poller.join()
    lab.remote("datastore", "rm", action_xml({"SOURCE": iqn.split()[0]}), "1")
    return bool(seen)


def run(quick: bool) -> dict:
    size, runs = (128 if quick else 512) * MIB, 3 if quick else 7
    cipher = copy_cipher()
    q = shlex.quote
    with scratch("copy-via") as work, driver_lab(work) as lab:
        image = work / "image.raw"
        write_random(image, size)
        piped, reference = work / "piped.img", work / "reference.img"  # on the pool's file system
        for path in (piped, reference):
            path.touch()
            os.truncate(path, size)
        for args in (["--op", "new", "--mode", "target", "--tid", REFERENCE_TID, "-T", REFERENCE_IQN],
                     ["--op", "bind", "--mode", "target", "--tid", REFERENCE_TID, "-I", "ALL"],
                     ["--op", "new", "--mode", "logicalunit", "--tid", REFERENCE_TID, "--lun", "1", "-b",
                      str(reference)]):
            if lab.tgtd.tgtadm("--lld", "iscsi", *args).returncode != 0:
                raise RuntimeError(f"tgtadm {' '.join(args)} failed")
        known = knows_copy_via(lab.env)
        via_iscsi = sessions_seen(lab, work)
        lab.connections()
        ssh = shlex.join([lab.ssh_command, *ssh_options(), "-o", f"Ciphers={cipher}", HOST])
        pipe = f"cat {q(str(image))} | {ssh} {q(f'dd of={q(str(piped))} bs=4M conv=fsync status=none')}"
        ids = count(10)
        written, iqns = {}, {}

        def cp(via: str):
            image_id = next(ids)
            iqns[via] = (lab.remote("datastore", "cp", action_xml({"PATH": str(image)}), str(image_id),
                                    COPY_VIA=via).split()[0], image_id)
            written[via] = lab.backing(image_id)

        cases = {PIPE: lambda: run_quietly(["sh", "-c", pipe], PIPE),
                 VIA_SSH: lambda: cp("ssh"), VIA_ISCSI: lambda: cp("iscsi"),
                 QEMU: lambda: run_quietly(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(image),
                                            lab.tgtd.url(REFERENCE_IQN)], QEMU)}
        flushed = {name: [] for name in cases}
        connections = {name: [] for name in cases}
        mismatches = {name: 0 for name in cases}

        def before(name: str) -> None:
            target = piped if name == PIPE else reference if name == QEMU else None
            if target is not None:  # a fresh sparse file, as cp makes
                os.truncate(target, 0)
                os.truncate(target, size)
            lab.connections()

        def after(name: str) -> None:
            connections[name].append(sum(lab.connections().values()))
            via = {VIA_SSH: "ssh", VIA_ISCSI: "iscsi"}.get(name)
            path = written[via] if via else piped if name == PIPE else reference
            flushed[name].append(fsync_path(str(path)))
            mismatches[name] += quiet(["cmp", "-s", str(image), str(path)], timeout=600).returncode != 0
            if via:
                iqn, image_id = iqns[via]
                lab.remote("datastore", "rm", action_xml({"SOURCE": iqn}), str(image_id))

        times = interleave(cases, runs, before=before, after=after)
    pipe_times = times[PIPE]
    rows = [[name, rate(size, seconds), Ratio.of(pipe_times, seconds).text, spread(flushed[name], 1000),
             f"{runs - mismatches[name]}/{runs}", "/".join(str(n) for n in sorted(set(connections[name])))]
            for name, seconds in times.items()]
    notes = [f"{size // MIB} MiB random image, min / median / max of {runs} interleaved rounds; file backend",
             f"ssh pipe: `cat IMG | ssh -o Ciphers={cipher} {HOST} dd of=FILE bs=4M conv=fsync` (data only, no "
             "target); cp: the whole action (volume, target, saved file, data); qemu-img convert: data only, "
             "onto an existing target",
             "x pipe speed: the pipe's time / this one's (above 1: faster); left to flush: an untimed fsync of "
             "the written file after the run (large: the copy left data unflushed)"]
    for name in (VIA_SSH, VIA_ISCSI, QEMU):
        if unflushed(flushed[name], flushed[PIPE]):
            notes.append(f"{name} left data unflushed: the fsync after it took {spread(flushed[name], 1000)} ms, "
                         f"after the pipe {spread(flushed[PIPE], 1000)} ms")
    really = known and via_iscsi
    if not known:
        notes.append("this one-iscsi has no COPY_VIA setting (`one-iscsi config show`): it ignored it, "
                     f"`{VIA_ISCSI}` copied over ssh like `{VIA_SSH}`")
    elif not via_iscsi:
        notes.append(f"tgtd saw no session during an untimed probe run of `{VIA_ISCSI}`: "
                     "it did not copy through the portal")
    goal = goal_from_ratio(f"`datastore cp` of {size // MIB} MiB with COPY_VIA=iscsi: speed-up over the ssh pipe",
                           Ratio.of(pipe_times, times[VIA_ISCSI]), 1.5, at_least=True,
                           ours=rate(size, times[VIA_ISCSI]), baseline=f"pipe {rate(size, pipe_times)}",
                           floor=f"qemu-img convert {rate(size, times[QEMU])}")
    if not really:
        goal.measured, goal.rounds = None, ""
        goal.text += " (not via iSCSI: see the notes)"
    elif unflushed(flushed[VIA_ISCSI], flushed[PIPE]):
        goal.text += " (but it left data unflushed: see the notes)"
    return report("copy_via", "`datastore cp` with COPY_VIA=ssh / iscsi vs the ssh pipe and a bare qemu-img convert",
                  ["copier", "MiB/s", "x pipe speed", "left to flush ms", "identical", "ssh connections"], rows,
                  [goal], figures={"runs": runs, "bytes": size, "cipher": cipher, "seconds": times,
                                   "left_to_flush_seconds": flushed, "copy_via_known": known,
                                   "session_seen_in_probe": via_iscsi, "connections": connections},
                  notes=notes, quick=quick)
