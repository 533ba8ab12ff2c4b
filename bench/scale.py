"""scale: time of `one-iscsi target new IQN`, `target tid IQN` and `target
delete IQN` (locally, each a process of its own) on a tgtd that already has
10, 1000 or 4000 targets (--quick: 10 and 1000).

One private tgtd per size, filled beforehand with tgtadm in a shell loop
(each target as one-iscsi makes them: ACL ALL and LUN 1 on a file, but with
tgtd's `null` backing store: a `rdwr` LUN costs tgtd 16 threads, and some
5000 of them make tgtadm fail with "out of memory" here), so the sizes are
measured interleaved: new, tid, delete on 10, then on 1000, then on 4000,
five rounds. Baseline: the same operation with 10 targets. Goal: with 1000
targets, each operation <= 3x its time with 10. For context, the table also
shows what every operation must pay at least: tgtadm's own `--op show --mode
target` and one-iscsi's parse of that output (in-process). The tgtds are
stopped by SIGKILL to their PIDs: tgtd takes ~50 ms per target deletion at
4000 targets."""
from __future__ import annotations

import subprocess
from contextlib import ExitStack

from common import ONE_ISCSI, Goal, check, interleave, median, one_iscsi_env, report, scratch, tgtd, timed

IQN = "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-bench"
FILL = r'''
i=1
while [ "$i" -le "$2" ]; do
  tgtadm -C "$1" --lld iscsi --op new --mode target --tid "$i" -T "iqn.2012-02.org.opennebula:other.vg-one.lv-one-$i" &&
  tgtadm -C "$1" --lld iscsi --op bind --mode target --tid "$i" -I ALL &&
  tgtadm -C "$1" --lld iscsi --op new --mode logicalunit --tid "$i" --lun 1 --bstype null -b "$3" || exit 1
  i=$((i + 1))
done
'''
OPERATIONS = ("new", "tid", "delete")


def run(quick: bool) -> dict:
    from oneiscsi import tgt

    sizes, runs = ((10, 1000) if quick else (10, 1000, 4000)), 5
    with scratch("scale") as work, ExitStack() as stack:
        daemons = {size: stack.enter_context(tgtd(kill=True)) for size in sizes}
        lun = work / "lun.img"
        lun.write_bytes(bytes(1024 * 1024))
        fills = [subprocess.Popen(["sh", "-c", FILL, "fill", str(daemon.control), str(size), str(lun)],
                                  stderr=subprocess.PIPE, text=True) for size, daemon in daemons.items()]
        for fill in fills:  # in parallel: tgtadm calls of different daemons do not wait for each other
            if fill.wait(timeout=300) != 0:
                raise RuntimeError(f"filling a tgtd with targets failed: {fill.stderr.read()}")
        cases, shows = {}, {}
        for size, daemon in daemons.items():
            (work / str(size)).mkdir()
            env = one_iscsi_env(work / str(size), daemon)

            def one_iscsi(*args: str, env=env) -> str:
                done = subprocess.run([ONE_ISCSI, "--config", "/dev/null", "target", *args, IQN],
                                      capture_output=True, text=True, timeout=120, env=env)
                return check(done, f"one-iscsi target {args[0]}").stdout

            show = ["tgtadm", "-C", str(daemon.control), *tgt.show_targets()[1:]]
            cases[size, "new"] = lambda one_iscsi=one_iscsi, size=size: _expect(one_iscsi("new"), size + 1)
            cases[size, "tid"] = lambda one_iscsi=one_iscsi, size=size: _expect(one_iscsi("tid"), size + 1)
            cases[size, "delete"] = lambda one_iscsi=one_iscsi: one_iscsi("delete")
            cases[size, "tgtadm show"] = lambda show=show: check(subprocess.run(
                show, capture_output=True, text=True, timeout=60), "tgtadm show")
            shows[size] = check(subprocess.run(show, capture_output=True, text=True, timeout=60), "tgtadm show")
            if len(tgt.parse_show(shows[size].stdout)) != size:
                raise RuntimeError(f"the tgtd meant to have {size} targets has another number")
        times = interleave(cases, runs, warmup=1)
    parse = {size: median([timed(lambda text=done.stdout: tgt.parse_show(text)) for _ in range(runs)])
             for size, done in shows.items()}
    medians = {key: median(values) for key, values in times.items()}
    base = sizes[0]
    rows = [[size, *(1000 * medians[size, op] for op in OPERATIONS), 1000 * medians[size, "tgtadm show"],
             1000 * parse[size], *(medians[size, op] / medians[base, op] for op in OPERATIONS)]
            for size in sizes]
    goals = [Goal(f"target {op}: time with 1000 targets vs with 10", medians[1000, op] / medians[base, op], 3)
             for op in OPERATIONS]
    return report("scale", "target new / tid / delete with 10, 1000, 4000 existing targets on one tgtd",
                  ["targets", "new ms", "tid ms", "delete ms", "tgtadm show ms", "parse_show ms",
                   "new x@10", "tid x@10", "delete x@10"], rows, goals,
                  figures={"runs": runs, "seconds": {f"{size} {op}": values for (size, op), values in times.items()},
                           "parse_show_seconds": parse},
                  notes=[f"median of {runs} interleaved rounds after 1 warm-up round; local runs (no ssh), "
                         "each tgtd private; existing targets have ACL ALL and LUN 1 (bstype null)",
                         "tgtadm show: one `tgtadm --op show --mode target`; parse_show: one-iscsi's parse of "
                         "its output, in-process"],
                  quick=quick)


def _expect(output: str, tid: int) -> None:
    if output.strip() != str(tid):
        raise RuntimeError(f"expected TID {tid}, one-iscsi printed {output.strip()!r}")
