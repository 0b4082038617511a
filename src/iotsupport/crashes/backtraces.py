"""A panic's `Backtrace:` log line recorded as a crash: the entry point for the device
logs feature.

    from iotsupport.crashes.backtraces import record_backtrace
    record_backtrace(session, config_id, line)          # in the caller's transaction

Call it only for lines a device credential proved (unverified crashes never count).
The release is the device's model's release of `firmware_version` (default: the
version its credential last reported); with that release's ELF the pcs are
symbolized, and the line joins the same group as a core dump of that crash.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig
from iotsupport.crashes.groups import record_backtrace_line
from iotsupport.crashes.symbol_files import SymbolCache
from iotsupport.crashes.symbols import NotAnElf
from iotsupport.crashes.symbols import Symbols
from iotsupport.crashes.tables import CrashGroup
from iotsupport.releases.tables import Release

_SYMBOLS = SymbolCache()


def record_backtrace(
    session: Session,
    config_id: int,
    line: str,
    *,
    firmware_version: str | None = None,
    seen_at: datetime | None = None,
) -> CrashGroup | None:
    """The crash group the line counted in; None when the line holds no backtrace."""
    release = _release(session, config_id, firmware_version)
    symbols: Symbols | None = None
    if release is not None and release.elf_file_sha256 is not None:
        try:
            symbols = _SYMBOLS.get(session, release.elf_file_sha256)
        except NotAnElf:
            symbols = None
    return record_backtrace_line(
        session, config_id=config_id, release=release, line=line, symbols=symbols, seen_at=seen_at
    )


def _release(session: Session, config_id: int, version: str | None) -> Release | None:
    if version is None:
        version = session.scalar(
            select(DeviceCheckin.verified_firmware_version).where(
                DeviceCheckin.config_id == config_id
            )
        )
    model_id = session.scalar(select(DeviceConfig.model_id).where(DeviceConfig.id == config_id))
    if version is None or model_id is None:
        return None
    query = select(Release).where(Release.model_id == model_id, Release.version == version)
    return session.scalars(query).first()
