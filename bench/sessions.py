"""sessions: ssh connections opened per driver action, counted by an ssh
wrapper (one log line per invocation, naming the host, then exec of the real
ssh with the lab's config) set as ONE_ISCSI_SSH.

A VM's life through the remotes, as OpenNebula calls them: datastore cp
(file backend on `tgtserver`), tm ln on node1, tm mv of the disk node1 ->
node2, tm mvds on node2, datastore rm. Login is simulated (fake-iscsiadm).
Baseline: the original driver's counts (cp 2, ln 1, mv up to 4, mvds 1,
rm 1). Goal: one connection per host per action (cp may open a second one
for the data stream). The counts are exact; the cycle is repeated to show
they are stable (the median is reported)."""
from __future__ import annotations

import os
import shlex
from collections import Counter

from common import Goal, action_xml, driver_lab, median, report, scratch

ORIGINAL = {"cp": 2, "ln": 1, "mv": 4, "mvds": 1, "rm": 1}
ALLOWED_PER_HOST = {"cp": 2}  # cp: one session for the setup, one for the data


def counting_ssh(path, log, ssh: str) -> str:
    """A wrapper logging the host (the word after `--`) of each invocation."""
    path.write_text("#!/bin/sh\nhost='?'; prev=\n"
                    'for arg; do [ "$prev" = -- ] && host=$arg; prev=$arg; done\n'
                    f'echo "$host" >> {shlex.quote(str(log))}\nexec {ssh} "$@"\n')
    path.chmod(0o755)
    return str(path)


def run(quick: bool) -> dict:
    runs = 5
    counts: dict[str, list[Counter]] = {action: [] for action in ORIGINAL}
    with scratch("sessions") as work, driver_lab(work) as lab:
        log = work / "ssh.log"
        ssh = counting_ssh(work / "counting-ssh", log, lab.sshd.ssh)

        def action(name: str, driver: str, *args: str) -> str:
            log.write_text("")
            out = lab.remote(driver, name, *args, ssh=ssh)
            counts[name].append(Counter(log.read_text().split()))
            return out

        image = work / "image.raw"
        image.write_bytes(os.urandom(1024 * 1024))
        for number in range(runs):
            image_id = str(100 + number)
            src, dst = f"{work}/vms/node1/{image_id}/disk.0", f"{work}/vms/node2/{image_id}/disk.0"
            iqn, _size = action("cp", "datastore", action_xml({"PATH": str(image)}), image_id).split()
            lab.export(iqn, lab.backing(int(image_id)))
            action("ln", "tm", iqn, f"node1:{src}", "1", image_id, "0")
            action("mv", "tm", f"node1:{src}", f"node2:{dst}", image_id, "0")
            action("mvds", "tm", f"node2:{dst}", iqn, image_id, "0")
            action("rm", "datastore", action_xml({"SOURCE": iqn}), image_id)
    rows, goals, figures = [], [], {}
    for name, per_run in counts.items():
        total = median([sum(run_.values()) for run_ in per_run])
        hosts = sorted({host for run_ in per_run for host in run_})
        per_host = {host: median([run_[host] for run_ in per_run]) for host in hosts}
        stable = len({tuple(sorted(run_.items())) for run_ in per_run}) == 1
        most = max(per_host.values())
        rows.append([name, total, ", ".join(f"{h} {n:g}" for h, n in per_host.items()), ORIGINAL[name],
                     total / ORIGINAL[name], "yes" if stable else "no"])
        limit = ALLOWED_PER_HOST.get(name, 1)
        goals.append(Goal(f"{name}: most connections to one host", most, limit, unit=""))
        figures[name] = {"per_run": [dict(run_) for run_ in per_run], "median_total": total,
                         "median_per_host": per_host, "original": ORIGINAL[name]}
    return report("sessions", "ssh connections per driver action vs the original driver",
                  ["action", "one-iscsi", "per host", "original", "x original", "same every run"],
                  rows, goals, figures,
                  notes=[f"median of {runs} runs of the cycle cp, ln (node1), mv (node1 -> node2), mvds, rm",
                         "login is simulated: iscsiadm is tests/data/fake-iscsiadm on the hosts",
                         "original driver's counts as given in the issue (cp 2, ln 1, mv up to 4, mvds 1, rm 1)"],
                  quick=quick)
