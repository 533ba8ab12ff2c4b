"""e2e: one image through its life with the OpenNebula remotes over the
loopback sshd: datastore cp (file backend on `tgtserver`, private tgtd),
tm ln on node1, tm mvds, datastore rm. Wall time of each step and in total.

Login is simulated: the hosts' iscsiadm is tests/data/fake-iscsiadm (no
kernel iSCSI here), which links the LUN's file where udev would link the disk.

Baseline, interleaved with it: the same steps done the original driver's way,
as plain shell over ssh with the same tools: cp = one ssh session (next TID
as last + 1, truncate, tgtadm new/bind/LUN, tgt-admin --dump to a file) plus
`cat IMG | ssh dd of=DEV bs=64k`; ln = one session (discovery, login, wait
for the device, link); mvds = one session (logout); rm = one session (find
the TID, delete the target, remove the file). No goal: the ratio shows what
one-iscsi's start-up, checks, locking, rollback bookkeeping and flushing cost."""
from __future__ import annotations

import os
import shlex
from collections import defaultdict
from itertools import count

from common import DATA, MIB, DriverLab, action_xml, driver_lab, interleave, median, report, scratch, timed

STEPS = ("cp", "ln", "mvds", "rm")
OURS, BASELINE = "one-iscsi", "plain ssh"
BASE_IQN = "iqn.2012-02.org.opennebula"


def ours(lab: DriverLab, image, image_id: int, steps: dict) -> None:
    disk, vmid = f"node1:{lab.work}/vms/{image_id}/disk.0", str(image_id)
    iqn = ""

    def cp() -> None:
        nonlocal iqn
        iqn = lab.remote("datastore", "cp", action_xml({"PATH": str(image)}), vmid).split()[0]
        lab.export(iqn, lab.backing(image_id))  # the stand-in initiator's view of the LUN (both sides do it)

    steps["cp"].append(timed(cp))
    steps["ln"].append(timed(lambda: lab.remote("tm", "ln", iqn, disk, "64", vmid, "0")))
    steps["mvds"].append(timed(lambda: lab.remote("tm", "mvds", disk, iqn, vmid, "0")))
    steps["rm"].append(timed(lambda: lab.remote("datastore", "rm", action_xml({"SOURCE": iqn}), vmid)))


def baseline(lab: DriverLab, image, image_id: int, steps: dict) -> None:
    q = shlex.quote
    iqn = f"{BASE_IQN}:tgtserver.vg-one.lv-one-{image_id}"
    dev = lab.backing(image_id)
    tgtadm = f"tgtadm -C {lab.tgtd.control} --lld iscsi"
    iscsiadm = f"{q(str(DATA / 'fake-iscsiadm'))} {q(str(lab.initiator))}"
    disk = lab.work / "vms" / f"b{image_id}" / "disk.0"
    size_mb = -(-os.path.getsize(image) // MIB)
    register = (
        f"set -e\nTID=$({tgtadm} --op show --mode target | awk '/^Target /{{t=$2+0}} END{{print t+1}}')\n"
        f"mkdir -p {q(str(dev.parent))}\ntruncate -s {size_mb}M {q(str(dev))}\n"
        f"{tgtadm} --op new --mode target --tid $TID -T {iqn}\n"
        f"{tgtadm} --op bind --mode target --tid $TID -I ALL\n"
        f"{tgtadm} --op new --mode logicalunit --tid $TID --lun 1 -b {q(str(dev))}\n"
        f"tgt-admin -C {lab.tgtd.control} --dump > {q(str(lab.work / 'targets.conf'))}\n")
    link = (f"set -e\nmkdir -p {q(str(disk.parent))}\n{iscsiadm} -m discovery -t st -p tgtserver >/dev/null\n"
            f"{iscsiadm} -m node --targetname {iqn} -p tgtserver --login\n"
            f"i=0; while :; do for d in {q(str(lab.initiator / 'by-path'))}/*-iscsi-{iqn}-lun-1; do "
            f"[ -e \"$d\" ] && exec ln -sfn \"$d\" {q(str(disk))}; done; i=$((i+1)); "
            f"[ $i -lt 300 ] || exit 1; sleep 0.1; done\n")
    unregister = (f"set -e\nTID=$({tgtadm} --op show --mode target | awk '$1 == \"Target\" && $3 == \"{iqn}\""
                  f" {{print $2+0}}')\n{tgtadm} --op delete --mode target --tid $TID\nrm -f {q(str(dev))}\n")

    def cp() -> None:
        lab.ssh("tgtserver", register)
        with open(image, "rb") as data:
            lab.ssh("tgtserver", f"dd of={q(str(dev))} bs=64k", stdin=data)
        lab.export(iqn, dev)

    steps["cp"].append(timed(cp))
    steps["ln"].append(timed(lambda: lab.ssh("node1", link)))
    steps["mvds"].append(timed(lambda: lab.ssh("node1", f"{iscsiadm} -m node --targetname {iqn} --logout")))
    steps["rm"].append(timed(lambda: lab.ssh("tgtserver", unregister)))


def run(quick: bool) -> dict:
    size, runs = (16 if quick else 64) * MIB, 5
    steps = {OURS: defaultdict(list), BASELINE: defaultdict(list)}
    ids = count(200)
    with scratch("e2e") as work, driver_lab(work) as lab:
        image = work / "image.raw"
        image.write_bytes(os.urandom(size))
        totals = interleave({BASELINE: lambda: baseline(lab, image, next(ids), steps[BASELINE]),
                             OURS: lambda: ours(lab, image, next(ids), steps[OURS])}, runs)
        left = lab.tgtd.target_ids()
        if left:
            raise RuntimeError(f"targets left behind on tgtd: {left}")
    rows = []
    for step in STEPS:
        base, mine = median(steps[BASELINE][step]), median(steps[OURS][step])
        rows.append([step, base, mine, mine / base])
    base_total, our_total = median(totals[BASELINE]), median(totals[OURS])
    rows.append(["total", base_total, our_total, our_total / base_total])
    return report("e2e", "cp + ln + mvds + rm of one image through the remotes vs the same steps as plain ssh",
                  ["step", f"{BASELINE} s", f"{OURS} s", "x baseline time"], rows,
                  figures={"image_bytes": size, "runs": runs, "total_seconds": totals,
                           "step_seconds": {name: dict(values) for name, values in steps.items()}},
                  notes=[f"{size // MIB} MiB random image, median of {runs} interleaved runs",
                         "login is simulated: iscsiadm on the hosts is tests/data/fake-iscsiadm",
                         "ssh sessions: plain ssh cp 2, ln 1, mvds 1, rm 1 (the original driver's shape)"],
                  quick=quick)
