"""Core dumps: kept as sent (deduplicated by SHA-256 per device, the newest
COREDUMP_KEEP_PER_DEVICE per device), decoded later by `Decoder`."""

from __future__ import annotations

import hashlib
import json
import logging
import typing as t
from collections.abc import Sequence

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from iotsupport.background import Periodic
from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig
from iotsupport.crashes import groups
from iotsupport.crashes.decode import DumpUnreadable
from iotsupport.crashes.decode import decode
from iotsupport.crashes.symbol_files import SymbolCache
from iotsupport.crashes.symbols import NotAnElf
from iotsupport.crashes.tables import DECODED
from iotsupport.crashes.tables import PENDING
from iotsupport.crashes.tables import UNREADABLE
from iotsupport.crashes.tables import CoreDump
from iotsupport.db.base import utcnow
from iotsupport.errors import NotFound
from iotsupport.releases.tables import Release

log = logging.getLogger(__name__)
_BATCH = 8


def store(session: Session, config_id: int, raw: bytes, *, verified: bool, keep: int) -> int:
    """The dump's id: a new one, or the one these bytes already are."""
    sha256 = hashlib.sha256(raw).hexdigest()
    existing = _find(session, config_id, sha256)
    if existing is None:
        dump = CoreDump(
            config_id=config_id,
            sha256=sha256,
            size=len(raw),
            data=raw,
            verified=verified,
            received_at=utcnow(),
            state=PENDING,
            symbolized=False,
        )
        try:
            with session.begin_nested():
                session.add(dump)
        except IntegrityError:  # the same retry, answered by another worker first
            existing = _find(session, config_id, sha256)
            if existing is None:
                raise
        else:
            _prune(session, config_id, keep)
            return dump.id
    if verified and not existing.verified:  # now proved: it counts from here on
        existing.verified, existing.state = True, PENDING
    return existing.id


def _find(session: Session, config_id: int, sha256: str) -> CoreDump | None:
    query = select(CoreDump).where(CoreDump.config_id == config_id, CoreDump.sha256 == sha256)
    return session.scalars(query).first()


def _prune(session: Session, config_id: int, keep: int) -> None:
    old = select(CoreDump.id).where(CoreDump.config_id == config_id)
    old = old.order_by(CoreDump.received_at.desc(), CoreDump.id.desc()).offset(keep)
    ids = list(session.scalars(old))
    if ids:
        session.execute(delete(CoreDump).where(CoreDump.id.in_(ids)))


def get(session: Session, dump_id: int) -> CoreDump:
    dump = session.get(CoreDump, dump_id)
    if dump is None:
        raise NotFound(f"no core dump {dump_id}", {"id": dump_id})
    return dump


def of_config(session: Session, config_id: int) -> Sequence[CoreDump]:
    if session.get(DeviceConfig, config_id) is None:
        raise NotFound(f"no config {config_id}", {"id": config_id})
    query = select(CoreDump).where(CoreDump.config_id == config_id)
    return session.scalars(query.order_by(CoreDump.received_at.desc(), CoreDump.id.desc())).all()


def remove(session: Session, dump_id: int) -> None:
    session.delete(get(session, dump_id))


def find_release(session: Session, config_id: int, elf_sha256: str | None) -> Release | None:
    """The release whose image names this app ELF (the dump may hold only a prefix of
    its SHA-256), among the releases of the device's model. A dump that records no
    SHA-256 (the binary format): the release of the version the device last reported
    with its credential."""
    model_id = session.scalar(select(DeviceConfig.model_id).where(DeviceConfig.id == config_id))
    if not elf_sha256:
        version = session.scalar(
            select(DeviceCheckin.verified_firmware_version).where(
                DeviceCheckin.config_id == config_id
            )
        )
        if version is None or model_id is None:
            return None
        query = select(Release).where(Release.model_id == model_id, Release.version == version)
        return session.scalars(query).first()
    query = select(Release).where(Release.elf_sha256.startswith(elf_sha256, autoescape=True))
    if model_id is not None:
        query = query.where(Release.model_id == model_id)
    found = session.scalars(query.limit(2)).all()
    return found[0] if len(found) == 1 else None


class Decoder:
    """Per process: decodes pending dumps on a background thread. Pending is a state in
    the database, so dumps not yet decoded when a process stops are decoded after."""

    def __init__(self, session_factory: t.Callable[[], Session], interval: float = 5.0) -> None:
        self._session_factory = session_factory
        self._symbols = SymbolCache()
        self._thread = Periodic("coredump-decoder", interval, self.run)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop(final=False)

    def wake(self) -> None:
        self._thread.wake()

    def run(self) -> int:
        """Decode what is pending; returns how many dumps were decoded."""
        done = 0
        tried: set[int] = set()
        while True:
            with self._session_factory() as session:
                query = select(CoreDump.id).where(CoreDump.state == PENDING)
                if tried:
                    query = query.where(CoreDump.id.not_in(tried))
                ids = list(session.scalars(query.order_by(CoreDump.id).limit(_BATCH)))
            if not ids:
                return done
            for dump_id in ids:
                tried.add(dump_id)
                try:
                    with self._session_factory() as session, session.begin():
                        done += self.decode_one(session, dump_id)
                except SQLAlchemyError as exc:  # e.g. the database went away: next tick
                    log.warning("core dump %s not decoded now: %s", dump_id, type(exc).__name__)

    def decode_one(self, session: Session, dump_id: int) -> int:
        """1 when it decoded the dump (0: gone, done, or another process has it now)."""
        query = select(CoreDump).where(CoreDump.id == dump_id, CoreDump.state == PENDING)
        dump = session.scalars(query.with_for_update(skip_locked=True)).first()
        if dump is None:
            return 0
        dump.decoded_at = utcnow()
        try:
            first = decode(dump.data, None)
        except DumpUnreadable as exc:
            dump.state, dump.error = UNREADABLE, str(exc)[:400]
            return 1
        except Exception:  # a dump must never stop the ones after it
            log.exception("core dump %s could not be decoded", dump_id)
            dump.state, dump.error = UNREADABLE, "the decoder failed on this dump"
            return 1
        release = find_release(session, dump.config_id, first.app_elf_sha256)
        decoded = first
        if release is not None and release.elf_file_sha256 is not None:
            try:
                symbols = self._symbols.get(session, release.elf_file_sha256)
                decoded = decode(dump.data, symbols)
            except NotAnElf as exc:
                log.warning("release %s: its ELF cannot be read: %s", release.id, exc)
            except Exception:  # keep what was decoded without the symbols
                log.exception("core dump %s: decoding with symbols failed", dump_id)
        dump.state, dump.error = DECODED, None
        dump.decoded = json.dumps(decoded.as_json())
        dump.chip, dump.app_elf_sha256 = decoded.chip, decoded.app_elf_sha256
        dump.release_id = release.id if release is not None else None
        dump.symbolized = decoded.symbolized
        if dump.verified and decoded.frames:
            group = groups.record(
                session,
                key=groups.group_key(decoded.frames, chip=decoded.chip, cause=decoded.cause_name),
                exception=decoded.cause_name,
                frames=decoded.frames,
                config_id=dump.config_id,
                release_id=dump.release_id,
                source="coredump",
                coredump_id=dump.id,
                seen_at=dump.received_at,
            )
            dump.group_id = group.id
        return 1
