"""Running a command of the machine."""
import subprocess


def quiet(argv: list[str], timeout: float = 30, env=None) -> subprocess.CompletedProcess:
    """Run argv with its output captured as text, failing after timeout seconds."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
