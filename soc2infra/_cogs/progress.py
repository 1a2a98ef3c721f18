"""A progress indicator for long scans, shown only on a terminal.

Short scans (pre-commit, most CI runs) finish before the delay and print nothing; pipes and
CI logs never get one. ``rich`` is imported only when the indicator actually appears, so the
common path costs a thread and a timer.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DEFAULT_DELAY = 0.75  # seconds a scan must run before anything is drawn


@contextmanager
def long_task_status(message: str, enabled: bool | None = None,
                     delay: float = DEFAULT_DELAY) -> Iterator[None]:
    """Show a spinner with *message* and the elapsed time if the block runs longer than *delay*.

    *enabled* defaults to "standard error is a terminal".
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield
        return
    lock = threading.Lock()
    state: dict[str, Any] = {"live": None, "done": False}

    def start() -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with lock:
            if state["done"]:
                return
            progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=True)
            progress.add_task(message, total=None)
            progress.start()
            state["live"] = progress

    timer = threading.Timer(delay, start)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["live"] is not None:
                state["live"].stop()
