"""Bounded waits: poll, never sleep blindly."""
import time
from typing import Callable


def wait_for(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition",
             longest: float = 0.2) -> None:
    """Poll check() until it is true, failing after timeout seconds; the
    pauses between polls grow up to longest seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        time.sleep(delay)  # back-off between polls of a bounded wait
        delay = min(delay * 2, longest)
