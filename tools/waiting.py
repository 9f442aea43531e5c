"""The scenario tests' one way to wait for a real part to get somewhere."""

import time


def wait_for(condition, timeout, what, every=0.2):
    """condition()'s first truthy value within timeout seconds; else the test fails, saying what it waited
    for: `what`, or what() when it is a function (called once, at the end, to show the state it found)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what() if callable(what) else what}")
        time.sleep(every)
