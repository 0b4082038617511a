"""A task run every few seconds on a daemon thread, for work a request must not wait on."""

from __future__ import annotations

import logging
import threading
import typing as t

log = logging.getLogger(__name__)


class Periodic:
    """Runs `task` every `interval` seconds (and at once on `wake`); `stop` runs it once more."""

    def __init__(self, name: str, interval: float, task: t.Callable[[], object]) -> None:
        self._name = name
        self._interval = interval
        self._task = task
        self._stopped = threading.Event()
        self._woken = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stopped.clear()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Run the task now rather than at the next tick (no-op unless started)."""
        self._woken.set()

    def stop(self, *, final: bool = True) -> None:
        """Stop the thread, then (with `final`) run the task a last time on this thread."""
        self._stopped.set()
        self._woken.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if final:
            self._task()

    def _run(self) -> None:
        while True:
            self._woken.wait(self._interval)
            self._woken.clear()
            if self._stopped.is_set():
                return
            try:
                self._task()
            except Exception:  # the thread must outlive any surprise
                log.exception("%s failed", self._name)
