"""Fixtures: a private tgtd, a loopback sshd, the CLI run in-process, an
HTTP server; thin wrappers around the helpers of the support package.

Daemons are started per test session on free ports and stopped by PID at the
end, also when tests fail. Waits poll with a bound; nothing sleeps blindly.
"""
from __future__ import annotations

import os
from typing import Callable

import pytest

from support import daemons
from support.lvm import volume_group
from support.cli import Result, run_cli
from support.http_server import http_server as serve_http


@pytest.fixture(scope="session")
def tgtd_daemon():
    with daemons.tgtd() as daemon:
        yield daemon


@pytest.fixture
def tgtd(tgtd_daemon, monkeypatch, tmp_path):
    """The session's tgtd, empty at the start and the end of the test; the
    CLI's tgtadm calls point at it, its config files and lock go to the test's
    own folder."""
    tgtd_daemon.delete_all_targets()
    for key, value in tgtd_daemon.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ONE_ISCSI_CONF_DIR", str(tmp_path / "tgt-conf.d" / "one-iscsi"))
    monkeypatch.setenv("ONE_ISCSI_LOCK_FILE", str(tmp_path / "one-iscsi.lock"))
    yield tgtd_daemon
    tgtd_daemon.delete_all_targets()


@pytest.fixture
def vg(tmp_path, monkeypatch):
    """A fresh LVM2 volume group on a loop device (support.lvm); the CLI's
    lvcreate, lvextend and lvremove are its mapping wrappers. Removed with
    everything in it, also on failure."""
    monkeypatch.setenv("LVM_SUPPRESS_FD_WARNINGS", "1")
    with volume_group(tmp_path) as group:
        for key, value in group.env.items():
            monkeypatch.setenv(key, value)
        yield group


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A loopback sshd with throwaway keys; clients reach it as host alias
    `tgtserver` (also node1, node2) through the ssh config in SSH."""
    with daemons.sshd(tmp_path_factory.mktemp("sshd")) as daemon:
        yield daemon


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No ONE_ISCSI_* setting of the machine running the tests leaks into them.
    The driver is called as OpenNebula 3.4 calls it unless a test says otherwise."""
    for key in list(os.environ):
        if key.startswith("ONE_ISCSI_") or key == "ONE_LOCATION":
            monkeypatch.delenv(key)
    monkeypatch.setenv("ONE_ISCSI_OPENNEBULA_VERSION", "3.4")


@pytest.fixture
def cli(capsys) -> Callable[..., Result]:
    """Run `one-iscsi ARGS` in this process; returns exit status, stdout, stderr."""
    return lambda *args: run_cli(capsys, *args)


@pytest.fixture
def http_server(tmp_path):
    """A loopback HTTP server for image URLs, serving a folder of the test."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_http(root) as server:
        yield server
