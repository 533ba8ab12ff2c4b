"""The target flow over a real loopback sshd, with the real sudo, one ssh
session per command batch, and hostile backing-store paths."""
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from support.commands import quiet

BASE = "iqn.2012-02.org.opennebula:tgtserver.vg-one"


@pytest.fixture
def over_ssh(sshd, tgtd, monkeypatch, tmp_path):
    """SSH is a wrapper that counts sessions, then runs the real ssh client."""
    log = tmp_path / "ssh-sessions.log"
    wrapper = tmp_path / "counting-ssh"
    wrapper.write_text(f'#!/bin/sh\necho session >> {shlex.quote(str(log))}\nexec {sshd.ssh} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("ONE_ISCSI_SSH", str(wrapper))
    monkeypatch.setenv("ONE_ISCSI_HOST", sshd.alias)
    return lambda: len(log.read_text().splitlines()) if log.exists() else 0


def test_flow_over_ssh(over_ssh, tgtd, cli, tmp_path):
    iqn = f"{BASE}.lv-one-2"
    store = tmp_path / "lv-one-2.img"
    subprocess.run(["truncate", "-s", "8M", str(store)], check=True)
    assert cli("target", "new", iqn).out == "1\n"
    assert over_ssh() == 1  # list and create in one session, under the lock
    assert cli("target", "bind-all", "1").rc == 0
    assert cli("lun", "bind", "1", str(store)).rc == 0
    assert over_ssh() == 3
    listed = json.loads(cli("target", "list", "--json").out)
    assert [(t["iqn"], t["luns"][0]["backing_store"]) for t in listed] == [(iqn, str(store))]
    assert quiet(["iscsi-inq", tgtd.url(iqn)]).returncode == 0
    assert cli("target", "delete", iqn).rc == 0
    assert over_ssh() == 5  # list; lookup, delete and config file removal in one
    assert tgtd.target_ids() == []


def test_hostile_backing_store_path_is_one_word_and_runs_nothing(over_ssh, tgtd, cli, tmp_path):
    name = f"one-iscsi-canary-{os.getpid()}"
    canaries = [Path.home() / name, Path.cwd() / name, Path("/") / name]
    folder = tmp_path / "it's a \"dir\" with spaces"
    folder.mkdir()
    store = folder / f"$(touch {name}) `touch {name}`; touch {name} #.img"
    subprocess.run(["truncate", "-s", "8M", str(store)], check=True)
    assert cli("target", "new", "--tid", "1", f"{BASE}.lv-one-3").rc == 0
    saved = cli("lun", "bind", "1", str(store))  # a path no saved file may hold
    assert saved.rc == 2 and "backing store must hold only" in saved.err
    assert cli("target", "delete", "1").rc == 0
    made_by_hand = tgtd.tgtadm("--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1", "-T",
                               f"{BASE}.lv-one-3")
    assert made_by_hand.returncode == 0
    bound = cli("lun", "bind", "1", str(store), "--force")  # tgtd alone: the path goes as one word
    assert bound.rc == 0, bound.err
    [target] = json.loads(cli("target", "list", "--json").out)
    assert target["luns"][0]["backing_store"] == str(store)
    assert not any(canary.exists() for canary in canaries)


def test_errors_over_ssh_name_the_host(over_ssh, tgtd, cli, sshd):
    missing = cli("target", "delete", "77")
    assert (missing.rc, missing.err) == (1, f"one-iscsi: error: no target with TID 77 on {sshd.alias}\n")


def test_unreachable_host_is_one_line(cli, monkeypatch, sshd):
    monkeypatch.setenv("ONE_ISCSI_SSH", f"{sshd.ssh} -o Port=1")
    monkeypatch.setenv("ONE_ISCSI_TIMEOUT", "10")
    result = cli("target", "list", "--host", "tgtserver")
    assert result.rc == 1
    assert result.err.startswith("one-iscsi: error: cannot reach host over ssh: ssh failed on tgtserver (exit 255)")
    assert len(result.err.splitlines()) == 1


def test_sudo_prefix_is_used_remotely(over_ssh, tgtd, cli, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_SUDO", "sudo -n --")
    assert cli("target", "new", f"{BASE}.lv-one-4").rc == 0
    monkeypatch.setenv("ONE_ISCSI_SUDO", "/nonexistent/sudo")
    result = cli("target", "list")
    assert result.rc == 1 and "/nonexistent/sudo" in result.err
