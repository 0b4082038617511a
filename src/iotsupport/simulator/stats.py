"""What a simulation counted: answers per kind of request, their latencies, events."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from dataclasses import field


@dataclass
class Stats:
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    bytes_downloaded: int = 0

    def answer(self, kind: str, status: int, started: float) -> None:
        self.answers[(kind, status)] += 1
        self.seconds.setdefault(kind, []).append(time.perf_counter() - started)

    def failure(self, kind: str, exc: Exception, started: float) -> None:
        self.errors[(kind, type(exc).__name__)] += 1
        self.seconds.setdefault(kind, []).append(time.perf_counter() - started)

    def count(self, event: str, number: int = 1) -> None:
        self.events[event] += number

    def requests(self) -> int:
        return sum(self.answers.values()) + sum(self.errors.values())

    def percentile(self, kind: str, share: float) -> float:
        values = sorted(self.seconds.get(kind, []))
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(share * len(values)))]

    def lines(self) -> list[str]:
        """The summary's request lines: per kind, its answers and latencies."""
        lines = []
        for kind in sorted(self.seconds):
            statuses = sorted((status, n) for (k, status), n in self.answers.items() if k == kind)
            failed = sum(n for (k, _), n in self.errors.items() if k == kind)
            answered = ", ".join(f"{n} x {status}" for status, n in statuses)
            if failed:
                answered += f", {failed} failed"
            lines.append(
                f"  {kind:<9} {answered}; p50 {1000 * self.percentile(kind, 0.5):.0f} ms, "
                f"p99 {1000 * self.percentile(kind, 0.99):.0f} ms"
            )
        return lines
