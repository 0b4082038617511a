"""The one intake of what devices report (check-ins with their firmware, credential
uses, health and broker status; logs and core dumps plug in as further kinds).

The device routes (configs/routes.py, the fast path, the device gate) hand reports over
through `configs.reports.DeviceReports`; this package implements it. It imports the
device (configs/) and the tables it writes, never the other way round.
"""

from __future__ import annotations

import time
import typing as t

from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from sqlalchemy.orm import Session

from iotsupport.configs.checkins import Networks
from iotsupport.device_reports.checkins import CheckinMetrics
from iotsupport.device_reports.checkins import Checkins
from iotsupport.device_reports.checkins import fetch_from
from iotsupport.device_reports.credential_uses import CredentialUses
from iotsupport.device_reports.credential_uses import Use
from iotsupport.device_reports.intake import ReportIntake
from iotsupport.health.kinds import Contacts
from iotsupport.health.kinds import HealthReports
from iotsupport.health.kinds import Status
from iotsupport.health.kinds import Statuses
from iotsupport.health.reports import HEADERS
from iotsupport.health.reports import HealthReport
from iotsupport.health.reports import Refused
from iotsupport.health.reports import from_headers

__all__ = ["DeviceReportIntake"]


class DeviceReportIntake(ReportIntake):
    """Today's kinds, behind the interface the device routes use (`DeviceReports`)."""

    def __init__(
        self,
        session_factory: t.Callable[[], Session],
        registry: CollectorRegistry,
        *,
        interval: float = 2.0,
        trusted_proxies: Networks = (),
        on_written: t.Callable[[], None] | None = None,
    ) -> None:
        super().__init__(session_factory, interval=interval, on_written=on_written)
        self.checkins = Checkins(
            session_factory, CheckinMetrics(registry), trusted_proxies=trusted_proxies
        )
        self.credential_uses = CredentialUses(trusted_proxies=trusted_proxies)
        self.health = HealthReports()
        self.statuses = Statuses()
        self.contacts = Contacts()
        self.refused = Counter(
            "iotsupport_health_reports_refused",
            "Device health reports refused, by source (http: ignored, the fetch is answered; "
            "mqtt) and the field that was wrong.",
            ["source", "field"],
            registry=registry,
        )
        kinds = (self.checkins, self.credential_uses, self.health, self.statuses, self.contacts)
        for kind in kinds:
            self.add_kind(kind)

    def fetched(
        self, config_id: int, version: int, environ: t.Mapping[str, t.Any], *, verified: bool
    ) -> None:
        # Health first: a crash reported with a new version is written before the version
        # (a rollout must never see the device updated and not yet crashed).
        if any(key in environ for key in HEADERS):  # health headers (README "Device health")
            try:
                report = from_headers(environ, verified=verified)
            except Refused as refused:  # ignored with a count: the fetch is answered
                self.refused.labels("http", refused.field).inc()
            else:
                if report is not None:
                    self.health_reported(config_id, report)
        self.record(self.checkins, config_id, fetch_from(version, environ, verified=verified))

    def health_urgent(self, config_id: int, environ: t.Mapping[str, t.Any]) -> bool:
        """Would the fetch's health headers be written before the answer (a new boot after
        an unexpected reset)? For a caller that must not wait on the database (main's
        `fetch_recorded_at_once` should answer False then)."""
        if not any(key in environ for key in HEADERS):
            return False
        try:
            report = from_headers(environ, verified=True)
        except Refused:
            return False
        return report is not None and self.health.urgent(config_id, [report])

    def health_reported(self, config_id: int, report: HealthReport) -> None:
        """A checked health report (the fetch's headers, or MQTT)."""
        self.record(self.health, config_id, [report])

    def contacted(self, config_id: int, at: float | None = None) -> None:
        """Any other sign of life (e.g. a log line): last seen, and so online."""
        self.record(self.contacts, config_id, time.time() if at is None else at)

    def status_reported(self, config_id: int, status: Status) -> None:
        """`online` / `offline` on the device's status topic."""
        self.record(self.statuses, config_id, status)

    def credential_used(self, config_id: int, environ: t.Mapping[str, t.Any]) -> None:
        use = Use(time.time(), environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"))
        self.record(self.credential_uses, config_id, use)
