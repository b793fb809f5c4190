"""One named background thread, started and stopped by the object that owns it."""

from __future__ import annotations

import threading
from typing import Callable


class Worker:
    """A named daemon thread with a stop flag: start() starts it once, stop() sets the flag,
    wakes the thread, and joins it with a deadline; stop() is safe twice and before start()."""

    def __init__(self, name: str, target: Callable[[], None], *, join_timeout: float = 5.0,
                 wake: Callable[[], None] | None = None) -> None:
        self.name = name
        self.join_timeout = join_timeout
        # Set while stopping: the target polls it, or waits on it instead of sleeping.
        self.stopping = threading.Event()
        self._target = target
        self._wake = wake
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread was started and has not been stopped."""
        return self._thread is not None

    def start(self) -> bool:
        """Start the thread unless it runs; True when it was started now."""
        if self._thread is not None:
            return False
        self.stopping.clear()
        self._thread = threading.Thread(target=self._target, name=self.name, daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        """Ask the thread to end, wake it, and wait up to join_timeout for it."""
        self.stopping.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._wake is not None:
            self._wake()
        if thread is not threading.current_thread():
            thread.join(self.join_timeout)
