"""Credential uses: when and from where each device credential was last used.

Batched like check-ins (never urgent: a rollout does not look at them), written in keys'
order (two workers' writers used to update overlapping rows in different orders and
deadlocked on PostgreSQL), never overwriting a newer use that another worker wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from datetime import datetime

from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import or_
from sqlalchemy import update
from sqlalchemy.orm import Session

from iotsupport.configs.checkins import Networks
from iotsupport.configs.checkins import client_address
from iotsupport.credentials.tables import CREDENTIALS
from iotsupport.device_reports.intake import AfterCommit

_C = CREDENTIALS.c
_RECORD_USE = (
    update(CREDENTIALS)
    .where(
        and_(
            _C.config_id == bindparam("id"),
            or_(_C.last_used_at.is_(None), _C.last_used_at < bindparam("used_at")),
        )
    )
    .values(last_used_at=bindparam("used_at"), last_used_from=bindparam("used_from"))
)


@dataclass(frozen=True, slots=True)
class Use:
    used_at: float  # epoch seconds
    peer: str | None
    forwarded_for: str | None


def _nothing() -> None:
    return None


class CredentialUses:
    """The credential-use kind of report (a `ReportKind[Use]`)."""

    name = "credential uses"

    def __init__(self, *, trusted_proxies: Networks = ()) -> None:
        self._trusted = trusted_proxies

    def merge(self, pending: Use | None, report: Use) -> Use:
        return report if pending is None or pending.used_at <= report.used_at else pending

    def urgent(self, key: int, report: Use) -> bool:
        return False

    def write(self, session: Session, reports: list[tuple[int, Use]]) -> AfterCommit:
        rows = []
        for config_id, use in reports:  # sorted by config id: row locks in one order
            address = client_address(use.peer, use.forwarded_for, self._trusted)
            rows.append(
                {
                    "id": config_id,
                    "used_at": datetime.fromtimestamp(use.used_at, UTC),
                    "used_from": address[:64] if address else None,
                }
            )
        session.connection().execute(_RECORD_USE, rows)
        return _nothing
