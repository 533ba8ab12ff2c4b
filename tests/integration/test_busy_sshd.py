"""An sshd with no room for more connections (MaxStartups) drops them with
"Connection reset by peer": one-iscsi tries again, with back-off, so that
many actions at once on one host all succeed. Real sshd, real ssh."""
from concurrent.futures import ThreadPoolExecutor

import pytest

from support import daemons
from support.driver import remote

ACTIONS = 20


@pytest.fixture(scope="module")
def busy_sshd(tmp_path_factory):
    with daemons.sshd(tmp_path_factory.mktemp("busy-sshd"), max_startups=2) as server:
        yield server


def test_many_actions_at_once_on_a_busy_sshd_all_succeed(busy_sshd, tmp_path):
    env = {"ONE_ISCSI_SSH": busy_sshd.ssh, "ONE_ISCSI_NO_ISCSI": "node1"}
    vms = [tmp_path / "ds" / "0" / str(vm) for vm in range(ACTIONS)]
    for vm in vms:
        vm.mkdir(parents=True)
    with ThreadPoolExecutor(ACTIONS) as pool:
        done = list(pool.map(lambda vm: remote("tm", "delete", f"node1:{vm}", env=env), vms))
    assert [run.returncode for run in done] == [0] * ACTIONS, [run.stderr for run in done if run.returncode]
    assert not any(vm.exists() for vm in vms)
