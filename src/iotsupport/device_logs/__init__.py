"""Device logs: what every device says, stored, searchable and followed live.

Intake: `POST /api/device/logs` (routes.py) and `iotsupport/devices/<mac>/logs` over MQTT
(subscriber.py) hand parsed lines (parsing.py) to the one intake of device reports as
the kind `LogLines` (intake.py), which writes them in batches (storage.py). Reading:
query.py; following: live.py (waits on the ASGI front's event loop). Retention runs
every 10 minutes per worker, one worker of the fleet at a time on PostgreSQL.

This package imports the device (configs/) and the intake; they import nothing of it.
"""

from __future__ import annotations

import logging
import time
import typing as t
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from prometheus_client import CollectorRegistry
from sqlalchemy import text

from iotsupport.background import Periodic
from iotsupport.db import Database
from iotsupport.device_logs.intake import LogBatch
from iotsupport.device_logs.intake import LogLines
from iotsupport.device_logs.live import LiveLogs
from iotsupport.device_logs.parsing import LogLine
from iotsupport.device_logs.storage import cap_devices
from iotsupport.device_logs.storage import drop_before
from iotsupport.device_reports.intake import ReportIntake
from iotsupport.settings import Settings

log = logging.getLogger(__name__)

RETENTION_SECONDS = 600.0
CAP_SECONDS = 3600.0
RETENTION_LOCK = 0x696F746C6F6773  # PostgreSQL advisory lock: one retention run at a time


class DeviceLogs:
    """Per worker: the intake kind, the live followers, retention and the MQTT reader."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        registry: CollectorRegistry,
        reports: ReportIntake,
    ) -> None:
        self.settings = settings
        self.database = database
        self.live = LiveLogs(database.session, settings.log_wait_max_seconds)
        self.kind = LogLines(
            registry,
            per_minute=settings.log_max_lines_per_minute,
            queue_max=settings.log_queue_max_lines,
            on_stored=self.live.written,
        )
        self.reports = reports
        reports.add_kind(self.kind)
        self.retention = Periodic("log-retention", RETENTION_SECONDS, self.apply_retention)
        self.subscriber: t.Any = None  # subscriber.LogSubscriber when MQTT is on
        self._next_cap = 0.0

    def receive(self, config_id: int, lines: list[LogLine], *, verified: bool) -> LogBatch:
        """Lines of one device, queued for the next batch; what was kept and dropped."""
        batch = self.kind.admit(config_id, lines, verified=verified)
        if batch.lines or batch.dropped:
            self.reports.record(self.kind, config_id, batch)
        return batch

    def apply_retention(self) -> None:
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.log_retention_days)
        started = time.monotonic()
        with self.database.engine.begin() as connection:
            if (
                connection.dialect.name == "postgresql"
                and not connection.execute(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RETENTION_LOCK}
                ).scalar()
            ):
                return  # another worker or replica is at it
            dropped = drop_before(connection, cutoff)
            # Counting every device's lines reads the whole table: once an hour is enough.
            capped = 0
            if time.monotonic() >= self._next_cap:
                capped = cap_devices(connection, self.settings.log_max_lines_per_device)
                self._next_cap = time.monotonic() + CAP_SECONDS
        if dropped or capped:
            log.info(
                "log retention: %d old partitions/lines dropped, %d lines over the cap per "
                "device, in %.2f s",
                dropped,
                capped,
                time.monotonic() - started,
            )

    def start(self) -> None:
        self.retention.start()
        if self.subscriber is not None:
            self.subscriber.start()

    def stop(self) -> None:
        if self.subscriber is not None:
            self.subscriber.stop()
        self.retention.stop(final=False)
