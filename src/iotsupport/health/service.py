"""Reads of a device's health (GET /api/configs/{id}/health)."""

from __future__ import annotations

import json
import typing as t
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.health.presence import Presence
from iotsupport.health.schemas import MAX_SAMPLES
from iotsupport.health.tables import DevicePresence
from iotsupport.health.tables import DeviceReset
from iotsupport.health.tables import HealthHour
from iotsupport.health.tables import HealthSample


def _hour_metrics(text: str | None) -> dict[str, dict[str, float]] | None:
    if not text:
        return None
    folded: dict[str, list[float]] = json.loads(text)
    return {
        name: {"count": int(c), "avg": s / c if c else 0.0, "min": low, "max": high}
        for name, (c, s, low, high) in folded.items()
    }


def device_health(
    session: Session, presence: Presence, config_id: int, since: datetime, now: datetime
) -> dict[str, t.Any]:
    samples = HealthSample.__table__.c
    rows = session.execute(
        select(HealthSample.__table__)
        .where(samples.config_id == config_id, samples.reported_at >= since)
        .order_by(samples.reported_at.desc(), samples.id.desc())
        .limit(MAX_SAMPLES)
    ).all()
    hours = HealthHour.__table__.c
    hour_rows = session.execute(
        select(HealthHour.__table__)
        .where(hours.config_id == config_id, hours.hour >= since)
        .order_by(hours.hour)
    ).all()
    resets = DeviceReset.__table__.c
    reset_rows = session.execute(
        select(DeviceReset.__table__)
        .where(resets.config_id == config_id, resets.boot_at >= since)
        .order_by(resets.boot_at)
    ).all()
    state = session.get(DevicePresence, config_id)
    return {
        "config_id": config_id,
        **presence.for_config(session, config_id, now),
        "reset_reason": state.reset_reason if state else None,
        "boot_at": state.boot_at if state else None,
        "samples": [
            {**row._asdict(), "metrics": json.loads(row.metrics) if row.metrics else None}
            for row in reversed(rows)
        ],
        "hours": [{**row._asdict(), "metrics": _hour_metrics(row.metrics)} for row in hour_rows],
        "resets": [row._asdict() for row in reset_rows],
    }
