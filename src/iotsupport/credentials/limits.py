"""Failed device logins per address: the brute-force limit (in this process's memory)."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections import deque


class FailureLimiter:
    """Failed device tokens per address in a sliding window, in this process's memory."""

    def __init__(self, max_failures: int, window_seconds: float, max_addresses: int = 10_000):
        self.max_failures = max_failures
        self.window = window_seconds
        self._max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, address: str, now: float) -> int | None:
        """Seconds until `address` may fail again, or None when it is under the limit."""
        with self._lock:
            failures = self._failures.get(address)
            if failures is None or len(failures) < self.max_failures:
                return None
            wait = failures[0] + self.window - now
            return math.ceil(wait) if wait > 0 else None

    def fail(self, address: str, now: float) -> None:
        with self._lock:
            failures = self._failures.pop(address, None) or deque(maxlen=self.max_failures)
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            failures.append(now)
            self._failures[address] = failures  # most recent last
            while len(self._failures) > self._max_addresses:
                self._failures.popitem(last=False)
