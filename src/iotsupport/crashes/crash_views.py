"""What the crash group routes answer, built from the groups and their occurrences."""

from __future__ import annotations

import json

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.crashes import groups
from iotsupport.crashes.schemas import CrashGroupListSchema
from iotsupport.crashes.schemas import CrashGroupSchema
from iotsupport.crashes.schemas import CrashQuery
from iotsupport.crashes.schemas import FrameSchema
from iotsupport.crashes.schemas import ReleaseCrashes
from iotsupport.crashes.tables import CrashGroup
from iotsupport.crashes.tables import CrashOccurrence
from iotsupport.device_models.tables import DeviceModel
from iotsupport.errors import NotFound
from iotsupport.releases.tables import Release


def crash_list(session: Session, query: CrashQuery) -> CrashGroupListSchema:
    ids = select(CrashOccurrence.group_id).distinct()
    if query.model is not None or query.release is not None:
        ids = ids.join(Release, Release.id == CrashOccurrence.release_id)
        ids = ids.join(DeviceModel, DeviceModel.id == Release.model_id)
        if query.model is not None:
            ids = ids.where(DeviceModel.code == query.model)
        if query.release is not None:
            ids = ids.where(Release.version == query.release)
    found = select(CrashGroup).where(CrashGroup.id.in_(ids))
    if query.status is not None:
        found = found.where(CrashGroup.status == query.status)
    rows = session.scalars(found).all()
    numbers = groups.stats(session, [row.id for row in rows])
    items = [_schema(row, numbers.get(row.id, {}), []) for row in rows]
    items.sort(key=lambda item: (item.last_seen_at is not None, item.last_seen_at), reverse=True)
    return CrashGroupListSchema(crashes=items, count=len(items))


def crash_group(session: Session, group_id: int) -> CrashGroupSchema:
    group = _get(session, group_id)
    numbers = groups.stats(session, [group.id]).get(group.id, {})
    o = CrashOccurrence
    rows = session.execute(
        select(DeviceModel.code, Release.version, func.count(), func.max(o.coredump_id))
        .join(Release, Release.id == o.release_id)
        .join(DeviceModel, DeviceModel.id == Release.model_id)
        .where(o.group_id == group.id)
        .group_by(DeviceModel.code, Release.version)
        .order_by(DeviceModel.code, Release.version)
    )
    releases = [
        ReleaseCrashes(model=code, version=version, occurrences=n, sample_coredump=sample)
        for code, version, n, sample in rows
    ]
    return _schema(group, numbers, releases)


def update_status(session: Session, group_id: int, status: str) -> CrashGroupSchema:
    groups.set_status(session, _get(session, group_id), status)
    session.flush()
    return crash_group(session, group_id)


def _get(session: Session, group_id: int) -> CrashGroup:
    group = session.get(CrashGroup, group_id)
    if group is None:
        raise NotFound(f"no crash group {group_id}", {"id": group_id})
    return group


def _schema(
    group: CrashGroup, numbers: dict[str, object], releases: list[ReleaseCrashes]
) -> CrashGroupSchema:
    return CrashGroupSchema.model_validate(
        {
            "id": group.id,
            "signature": group.signature,
            "title": group.key,
            "exception": group.exception,
            "frames": [FrameSchema(**frame) for frame in json.loads(group.frames)],
            "status": group.status,
            "regression": group.regression,
            "first_seen_at": numbers.get("first_seen_at"),
            "last_seen_at": numbers.get("last_seen_at"),
            "occurrences": numbers.get("occurrences", 0),
            "devices_affected": numbers.get("devices", 0),
            "releases_affected": numbers.get("releases", 0),
            "releases": releases,
        }
    )
