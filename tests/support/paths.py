"""Places the tests and the benchmarks use."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REMOTES = REPO / "remotes"
DATA = REPO / "tests" / "data"
BIN = Path(sys.executable).parent  # the venv's bin: python and one-iscsi
