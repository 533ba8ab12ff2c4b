"""Calling the remotes exactly as OpenNebula does: base64 action XML, image ID."""
from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path
from typing import Mapping, Optional
from xml.sax.saxutils import escape

from .paths import BIN, REMOTES

# the one line of a remote stub: exec one-iscsi --config <file> <group> <command> -- "$@"
STUB_EXEC = re.compile(r'exec "\$\{ONE_ISCSI:-one-iscsi\}" --config "\$\(dirname "\$0"\)/(?P<config>[^"]+)" '
                       r'(?P<command>[a-z]+ [a-z]+ --(?: [a-z_]+)?) "\$@"')


def action_xml(image: Mapping[str, str], image_template: Optional[Mapping[str, str]] = None,
               datastore: Optional[Mapping[str, str]] = None) -> str:
    def leaves(values: Mapping[str, str]) -> str:
        return "".join(f"<{key}>{escape(str(value))}</{key}>" for key, value in values.items())

    xml = (f"<DS_DRIVER_ACTION_DATA><IMAGE>{leaves(image)}<TEMPLATE>{leaves(image_template or {})}"
           f"</TEMPLATE></IMAGE><DATASTORE><ID>100</ID><NAME>iscsi</NAME><TEMPLATE>"
           f"{leaves(datastore or {})}</TEMPLATE></DATASTORE></DS_DRIVER_ACTION_DATA>")
    return encode(xml)


def encode(xml: str) -> str:
    return base64.b64encode(xml.encode()).decode()


def stub(driver: str, action: str) -> Path:
    """remotes/<driver>/iscsi/<action>: what OpenNebula runs."""
    return REMOTES / driver / "iscsi" / action


def remote(driver: str, action: str, *args: str, env: Optional[Mapping[str, str]] = None,
           timeout: float = 120, stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run remotes/<driver>/iscsi/<action> ARGS with one-iscsi on PATH (and
    stdin, as OpenNebula 6.8 and later give the action XML)."""
    environment = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run([str(stub(driver, action)), *args], capture_output=True, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          text=True, timeout=timeout, env=environment)


def remote_argv(driver: str, action: str, *args: str) -> list[str]:
    """The arguments remotes/<driver>/iscsi/<action> ARGS gives one-iscsi,
    read from the stub itself: to run the same command in-process."""
    path = stub(driver, action)
    found = STUB_EXEC.fullmatch(path.read_text().splitlines()[-1])
    assert found, f"{path} is not a one-line exec of one-iscsi"
    return ["--config", str(path.parent / found["config"]), *found["command"].split(), *args]


def start_remote(driver: str, action: str, *args: str) -> subprocess.Popen:
    """remotes/<driver>/iscsi/<action> ARGS started, as OpenNebula's driver process starts it."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    return subprocess.Popen([str(stub(driver, action)), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def error_block(stderr: str) -> str:
    """The one-line message between OpenNebula's ERROR MESSAGE markers."""
    lines = stderr.splitlines()
    start = lines.index("ERROR MESSAGE --8<------")
    assert lines[start + 2] == "ERROR MESSAGE ------>8--", stderr
    return lines[start + 1]


def random_image(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def read_lun(tgtd, iqn: str, out: Path) -> bytes:
    """LUN 1 of iqn, read over iSCSI with qemu-img (libiscsi)."""
    done = subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", tgtd.url(iqn), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out.read_bytes()
