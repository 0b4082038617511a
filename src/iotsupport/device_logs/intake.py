"""Log lines as one kind of device report (device_reports/intake.py writes them).

Per worker, in memory: each device may send LOG_MAX_LINES_PER_MINUTE (a token bucket:
a burst of a minute's lines, refilled evenly), and at most LOG_QUEUE_MAX_LINES lines
wait to be written. Lines over either are dropped and counted: per device in
`device_log_drops` (shown beside its log) and in the metric
`iotsupport_device_log_lines{outcome}`. Never urgent: a log line waits for the batch,
so it never delays the request that carried it, nor a device fetch.
"""

from __future__ import annotations

import threading
import time
import typing as t
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime

from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from iotsupport.device_logs.parsing import LogLine
from iotsupport.device_logs.storage import LogStorage
from iotsupport.device_logs.tables import DeviceLogDrops
from iotsupport.device_reports.intake import AfterCommit

_DROPS = DeviceLogDrops.__table__


@dataclass(slots=True)
class LogBatch:
    """A device's lines waiting to be written, and how many it lost meanwhile."""

    lines: list[tuple[float, LogLine, bool]] = field(default_factory=list)  # (at, line, verified)
    dropped: int = 0
    dropped_at: float = 0.0


class LogMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lines = Counter(
            "iotsupport_device_log_lines",
            "Device log lines by outcome: accepted (queued to be written), dropped_rate (a "
            "device over LOG_MAX_LINES_PER_MINUTE), dropped_queue (LOG_QUEUE_MAX_LINES waiting).",
            ["outcome"],
            registry=registry,
        )


class LogLines:
    """The log-line kind of report (a `ReportKind[LogBatch]`), keyed by config id."""

    name = "log lines"

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        per_minute: int,
        queue_max: int,
        on_stored: t.Callable[[], None] = lambda: None,
    ) -> None:
        self.storage = LogStorage()
        self.metrics = LogMetrics(registry)
        self.on_stored = on_stored  # the live readers look for newer lines
        self._rate = per_minute / 60.0
        self._burst = float(per_minute)
        self._queue_max = queue_max
        self._queued = 0
        self._buckets: dict[int, tuple[float, float]] = {}  # config id -> (tokens, at)
        self._lock = threading.Lock()

    def admit(
        self, config_id: int, lines: list[LogLine], *, verified: bool, now: float | None = None
    ) -> LogBatch:
        """The lines this device may have written now, and how many it lost."""
        now = time.time() if now is None else now
        with self._lock:
            tokens, at = self._buckets.get(config_id, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            allowed = min(len(lines), int(tokens))
            room = max(0, self._queue_max - self._queued)
            kept = min(allowed, room)
            self._buckets[config_id] = (tokens - allowed, now)
            self._queued += kept
            if len(self._buckets) > 100_000:  # devices long quiet have full buckets anyway
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
        over_rate, over_queue = len(lines) - allowed, allowed - kept
        if kept:
            self.metrics.lines.labels("accepted").inc(kept)
        if over_rate:
            self.metrics.lines.labels("dropped_rate").inc(over_rate)
        if over_queue:
            self.metrics.lines.labels("dropped_queue").inc(over_queue)
        batch = LogBatch([(now, line, verified) for line in lines[:kept]])
        if kept < len(lines):
            batch.dropped, batch.dropped_at = len(lines) - kept, now
        return batch

    def merge(self, pending: LogBatch | None, report: LogBatch) -> LogBatch:
        if pending is None:
            return report
        pending.lines.extend(report.lines)
        pending.dropped += report.dropped
        pending.dropped_at = max(pending.dropped_at, report.dropped_at)
        return pending

    def urgent(self, key: int, report: LogBatch) -> bool:
        return False

    def write(self, session: Session, reports: list[tuple[int, LogBatch]]) -> AfterCommit:
        devices = self.storage.known_devices(session, [key for key, _ in reports])
        rows = []
        drops = []
        for config_id, batch in reports:
            if config_id not in devices:
                continue  # deleted since: its lines go with it
            firmware = devices[config_id]
            for at, line, verified in batch.lines:
                rows.append(
                    {
                        "config_id": config_id,
                        "received_at": datetime.fromtimestamp(at, UTC),
                        "device_time": line.device_time,
                        "uptime_ms": line.uptime_ms,
                        "level": line.level,
                        "tag": line.tag,
                        "message": line.message,
                        "firmware_version": firmware,
                        "verified": verified,
                    }
                )
            if batch.dropped:
                drops.append(
                    {
                        "config_id": config_id,
                        "dropped": batch.dropped,
                        "last_dropped_at": datetime.fromtimestamp(batch.dropped_at, UTC),
                    }
                )
        days = self.storage.insert(session, rows) if rows else set()
        if drops:
            _count_drops(session, drops)
        written = sum(len(batch.lines) for _, batch in reports)

        def after() -> None:
            self.storage.remember(days)
            with self._lock:
                self._queued = max(0, self._queued - written)
            if rows:
                self.on_stored()

        return after


def _count_drops(session: Session, drops: list[dict[str, t.Any]]) -> None:
    connection = session.connection()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(_DROPS)
    statement = statement.on_conflict_do_update(
        index_elements=[_DROPS.c.config_id],
        set_={
            "dropped": _DROPS.c.dropped + statement.excluded.dropped,
            "last_dropped_at": statement.excluded.last_dropped_at,
        },
    )
    connection.execute(statement, drops)
