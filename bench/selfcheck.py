"""A check of the benchmarks' pure helpers (not a test of one-iscsi; pytest
does not collect it: its testpaths are tests/unit and tests/integration).

    .venv/bin/python bench/selfcheck.py
"""
import subprocess
import sys
import tempfile
from pathlib import Path

from common import Goal, Ratio, counting_ssh, goal_from_ratio, spread
from fixed_cost import count_text
from run import BEGIN, END, replace_block


def main() -> int:
    assert spread([0.3, 0.1, 0.2], 1000, "ms") == "100 / 200 / 300 ms"
    ratio = Ratio.of([2.0, 4.0, 3.0], [1.0, 1.0, 2.0])
    assert ratio.of_medians == 3.0 and ratio.rounds == [2.0, 4.0, 1.5]
    assert ratio.text == "3.00x (rounds 1.50..4.00)"
    goal = goal_from_ratio("speed", ratio, 2, at_least=True)
    assert (goal.verdict, goal.measured_text, goal.limit_text) == ("met", "3.00x (rounds 1.50..4.00)", ">= 2x")
    assert Goal("time", 41.0, 40, unit=" ms").verdict == "NOT MET"
    assert Goal("missing", None, 1).verdict == "not measured"
    assert count_text([{"node1": 1, "node2": 1}] * 3) == "1+1"
    assert count_text([{"tgtserver": 1}, {"tgtserver": 2}]) == "1~"
    text = f"a\n{BEGIN}\nold\n{END}\nb\n"
    assert replace_block(text, "new") == f"a\n{BEGIN}\nnew\n{END}\nb\n"
    assert replace_block("no markers", "new") is None
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "log"
        wrapper = counting_ssh(Path(folder) / "ssh", log, "echo")
        subprocess.run([wrapper, "-o", "BatchMode=yes", "node2", "true"], check=True, capture_output=True)
        subprocess.run([wrapper, "-F", "cfg", "--", "tgtserver", "node1"], check=True, capture_output=True)
        assert log.read_text().split() == ["node2", "tgtserver"]
    print("bench helpers: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
