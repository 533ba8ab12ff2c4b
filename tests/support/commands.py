"""Running a command of the machine."""
import subprocess


def quiet(argv: list[str], timeout: float = 30, env=None) -> subprocess.CompletedProcess:
    """Run argv with its output captured as text, failing after timeout seconds."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def processes(pattern: str) -> list[str]:
    """`PID command line` of the processes of this machine matching pattern (pgrep -f)."""
    done = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True, timeout=30)
    return [line for line in done.stdout.splitlines() if "pgrep" not in line]
