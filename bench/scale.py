"""scale: `one-iscsi target new IQN`, `target delete IQN`, and `datastore cp`
(a 1 MiB image) and `datastore rm` through the remotes, locally
(HOST=localhost, file backend), each a process of its own, on a tgtd that
already holds 10 targets, and on one that holds 4000 (--quick: 1000).

One private tgtd per size, filled beforehand by a shell loop of tgtadm (each
target as one-iscsi makes them: ACL ALL, LUN 1, and its saved file in
CONF_DIR; the LUN uses tgtd's `null` backing store, since a `rdwr` LUN costs
tgtd 16 threads and some 5000 of them make tgtadm fail with "out of memory"
here). The sizes are measured interleaved: new, delete, cp, rm on 10
targets, then on the big tgtd, each round. Floor, in the same rounds: tgtd's
own `tgtadm --op show --mode target` (what any tool that reads the target
list pays). Goal: each operation with the big tgtd <= 1.3x its time with
10 (ratio of medians, with the range of the per-round ratios). The tgtds are
stopped by SIGKILL to their PIDs (tgtd deletes thousands of targets slowly)."""
from __future__ import annotations

import subprocess
from contextlib import ExitStack

from common import (MIB, ONE_ISCSI, Ratio, action_xml, goal_from_ratio, interleave, one_iscsi_env, random_image,
                    remote, report, run_quietly, scratch, spread, tgtd)

IQN = "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-1"
FIRST_FILLED = 100000  # the filled targets are images 100000, 100001, ... of the same datastore
FILL = r'''
i=1
while [ "$i" -le "$2" ]; do
  tgtadm -C "$1" --lld iscsi --op new --mode target --tid "$i" -T "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-$(($4 + i))" &&
  tgtadm -C "$1" --lld iscsi --op bind --mode target --tid "$i" -I ALL &&
  tgtadm -C "$1" --lld iscsi --op new --mode logicalunit --tid "$i" --lun 1 --bstype null -b "$3" || exit 1
  i=$((i + 1))
done
'''
OPERATIONS = ("target new", "target delete", "image cp", "image rm")


def saved_files(conf_dir, lun, size: int) -> None:
    """The saved file of each filled target, as one-iscsi writes them."""
    from oneiscsi import tgtconf

    conf_dir.mkdir(parents=True)
    for i in range(1, size + 1):
        iqn = f"iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-{FIRST_FILLED + i}"
        with open(tgtconf.path(str(conf_dir), iqn), "w") as file:
            file.write(tgtconf.render(tgtconf.TargetSpec(iqn, (str(lun),))))


def run(quick: bool) -> dict:
    sizes, runs = ((10, 1000) if quick else (10, 4000)), 3 if quick else 7
    with scratch("scale") as work, ExitStack() as stack:
        daemons = {size: stack.enter_context(tgtd(kill=True)) for size in sizes}
        lun = work / "lun.img"
        lun.write_bytes(bytes(MIB))
        fills = [subprocess.Popen(["sh", "-c", FILL, "fill", str(daemon.control), str(size), str(lun),
                                   str(FIRST_FILLED)], stderr=subprocess.PIPE, text=True)
                 for size, daemon in daemons.items()]
        for fill in fills:  # stopped before their tgtd, also on failure
            stack.callback(lambda fill=fill: fill.poll() is None and (fill.kill(), fill.wait()))
        image = random_image(work / "image.raw", MIB)
        cases, envs, tids = {}, {}, {size: set() for size in sizes}
        for size, daemon in daemons.items():
            (work / str(size)).mkdir()
            env = envs[size] = one_iscsi_env(work / str(size), daemon, HOST="localhost")
            saved_files(work / str(size) / "tgt-conf.d" / "one-iscsi", lun, size)

            def target(operation: str, env=env) -> str:
                return run_quietly([ONE_ISCSI, "target", operation, IQN], f"target {operation}", env=env).stdout

            def driver(action: str, key: str, value: str, env=env) -> str:
                done = remote("datastore", action, action_xml({key: value}), "2", env=env)
                if done.returncode != 0:
                    raise RuntimeError(f"datastore/{action} failed: {done.stderr.strip()}")
                return done.stdout

            cases[size, "target new"] = lambda target=target, size=size: tids[size].add(target("new").strip())
            cases[size, "target delete"] = lambda target=target: target("delete")
            cases[size, "image cp"] = lambda driver=driver: driver("cp", "PATH", str(image))
            cases[size, "image rm"] = lambda driver=driver: driver(
                "rm", "SOURCE", "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-2")
            cases[size, "tgtadm show"] = lambda daemon=daemon: daemon.tgtadm(
                "--lld", "iscsi", "--op", "show", "--mode", "target").check_returncode()
        for fill in fills:  # in parallel: tgtadm calls of different daemons do not wait for each other
            if fill.wait(timeout=1800) != 0:
                raise RuntimeError(f"filling a tgtd with targets failed: {fill.stderr.read()}")
        for size, daemon in daemons.items():
            if len(daemon.target_ids()) != size:
                raise RuntimeError(f"the tgtd meant to have {size} targets has {len(daemon.target_ids())}")
        times = interleave(cases, runs, warmup=1)
        for size, daemon in daemons.items():
            if len(daemon.target_ids()) != size:
                raise RuntimeError(f"targets left behind on the tgtd of {size} targets")
    small, big = sizes
    odd = {size: found for size, found in tids.items() if not all(tid.isdigit() and int(tid) > size for tid in found)}
    notes = [f"min / median / max of {runs} interleaved rounds after 1 warm-up round; local runs (no ssh), each "
             "tgtd private; existing targets: ACL ALL, LUN 1 (bstype null), saved file",
             "tgtadm show: one `tgtadm --op show --mode target` (the floor of anything reading the list)"]
    if odd:
        notes.append(f"`target new` printed TIDs that are not new ones above the existing targets: {odd}")
    rows = [[operation, *(spread(times[size, operation], 1000) for size in sizes),
             Ratio.of(times[big, operation], times[small, operation]).text]
            for operation in (*OPERATIONS, "tgtadm show")]
    goals = [goal_from_ratio(f"{operation}: time with {big} targets vs with {small}",
                             Ratio.of(times[big, operation], times[small, operation]), 1.3,
                             ours=f"{spread(times[big, operation], 1000, 'ms')} at {big}",
                             baseline=f"{spread(times[small, operation], 1000, 'ms')} at {small}",
                             floor=f"tgtadm show {spread(times[big, 'tgtadm show'], 1000, 'ms')} at {big}, "
                                   f"{spread(times[small, 'tgtadm show'], 1000, 'ms')} at {small}")
             for operation in OPERATIONS]
    return report("scale", f"target new / delete, image cp / rm with {big} existing targets vs {small}",
                  ["operation", f"ms at {small}", f"ms at {big}", f"x at {small}"], rows, goals,
                  figures={"runs": runs, "seconds": {f"{size} {op}": values for (size, op), values in times.items()}},
                  notes=notes, quick=quick)
