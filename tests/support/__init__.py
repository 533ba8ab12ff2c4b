"""Helpers of the tests and the benchmarks: no fixtures, nothing of pytest.

paths        where the repository, its remotes, the venv and tests/data are
commands     run a command quietly (captured output, bounded time)
wait         bounded polling
ports        free loopback ports
daemons      a private tgtd and a loopback sshd, as context managers
driver       calling the remotes as OpenNebula does (action XML, error block)
http_server  a loopback HTTP server for image URLs
cli          one-iscsi run in this process, its output captured

The tests find this package because tests/ is on sys.path (pytest's prepend
import mode, for the rootdir conftest); bench/common.py appends tests/.
"""
