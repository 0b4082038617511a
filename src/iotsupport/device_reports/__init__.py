"""The one intake of what devices report (check-ins with their firmware, credential
uses; health, logs and core dumps plug in as further kinds).

The device routes (configs/routes.py, the fast path, the device gate) hand reports over
through `configs.reports.DeviceReports`; this package implements it. It imports the
device (configs/) and the tables it writes, never the other way round.
"""

from __future__ import annotations

import time
import typing as t

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session

from iotsupport.configs.checkins import Networks
from iotsupport.device_reports.checkins import CheckinMetrics
from iotsupport.device_reports.checkins import Checkins
from iotsupport.device_reports.checkins import fetch_from
from iotsupport.device_reports.credential_uses import CredentialUses
from iotsupport.device_reports.credential_uses import Use
from iotsupport.device_reports.intake import ReportIntake

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
        self.add_kind(self.checkins)
        self.add_kind(self.credential_uses)

    def fetched(
        self, config_id: int, version: int, environ: t.Mapping[str, t.Any], *, verified: bool
    ) -> None:
        self.record(self.checkins, config_id, fetch_from(version, environ, verified=verified))

    def credential_used(self, config_id: int, environ: t.Mapping[str, t.Any]) -> None:
        use = Use(time.time(), environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"))
        self.record(self.credential_uses, config_id, use)
