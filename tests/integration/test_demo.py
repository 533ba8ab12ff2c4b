"""`make demo` keeps working: the README's first command."""
import subprocess
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "demo.sh"


def test_demo_registers_reads_back_and_removes_an_image():
    done = subprocess.run([str(DEMO)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cp printed: iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-42 raw" in done.stdout
    assert "checksums match" in done.stdout
    assert "volume file removed" in done.stdout
    assert not list(Path("/tmp").glob("one-iscsi-demo.*"))
