"""The per-worker documents, and which source a fetch reads them from."""

from __future__ import annotations

import gc
import typing as t
from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session
from sqlalchemy.orm import UOWTransaction

from iotsupport.configs.tables import DeviceConfig
from iotsupport.credentials.tables import DeviceCredential
from iotsupport.db import DEVICES_CHANGED_KEY
from iotsupport.db import Database
from iotsupport.device_cache.documents import DeviceDocument
from iotsupport.device_cache.documents import read_document
from iotsupport.settings import Settings

# stale: memory, while this worker cannot reach the database at all (PostgreSQL).
CacheState = t.Literal["memory", "database", "stale"]


class Feed(t.Protocol):
    """What keeps a cache current: PostgreSQL's notifications or SQLite's journal."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def current(self) -> bool:
        """May fetches read memory now? (SQLite catches up first.)"""
        ...

    def settle(self) -> None:
        """Return once every worker has applied what this process committed."""
        ...

    def database_away(self) -> bool:
        """Is the database out of this worker's reach (so that nothing can commit)?"""
        ...


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        fetches = Counter(
            "iotsupport_device_fetches",
            "Device config fetches by where the worker read the document: memory, the "
            "database (while its cache loads or its change feed is away), or stale: "
            "memory while the database is out of this worker's reach.",
            ["source"],
            registry=registry,
        )
        self.from_memory = fetches.labels("memory")
        self.from_database = fetches.labels("database")
        self.stale = fetches.labels("stale")
        self.current = Gauge(
            "iotsupport_device_cache_current",
            "1 when every worker answers device fetches from memory; 0 while one reads "
            "the database until its cache has caught up.",
            registry=registry,
            multiprocess_mode="min",
        )
        self.reloads = Counter(
            "iotsupport_device_cache_reloads",
            "Documents reloaded after a change (changed), or whole loads (full).",
            ["kind"],
            registry=registry,
        )
        self.settle = Histogram(
            "iotsupport_device_cache_settle_seconds",
            "From a commit to every worker having applied it (PostgreSQL), measured "
            "before the commit's MQTT announcements.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )


class DeviceCache:
    """Every device's document by MAC. One writer at a time (the feed); fetches read the
    dict without a lock (a dict's get and item assignment are atomic)."""

    def __init__(self, metrics: CacheMetrics) -> None:
        self.metrics = metrics
        self.feed: Feed | None = None
        self._documents: dict[str, DeviceDocument] = {}
        self._loaded = False  # memory has held every document once

    def document(
        self, session: t.Callable[[], Session], mac: str, known_etags: t.Collection[str]
    ) -> DeviceDocument | None:
        """The device's document (without content when the client holds its ETag);
        `session` is called only when the database must be read."""
        current, document = self.peek(mac)
        if current:
            self.metrics.from_memory.inc()
            return document.for_client(known_etags) if document is not None else None
        if not self._database_away():
            try:
                document = read_document(session(), mac, known_etags)
            except OperationalError:
                if not self._loaded:
                    raise
            else:
                self.metrics.from_database.inc()
                return document
        return self._stale(mac, known_etags)

    def _stale(self, mac: str, known_etags: t.Collection[str]) -> DeviceDocument | None:
        """While the database is out of reach no change can commit through it: what
        memory holds is what the device should get, marked as such (README "Outages")."""
        if not self._loaded:
            raise OperationalError("device fetch", None, ConnectionError("database away"))
        self.metrics.stale.inc()
        document = self._documents.get(mac)
        return document.for_client(known_etags).marked_stale() if document is not None else None

    def _database_away(self) -> bool:
        return self._loaded and self.feed is not None and self.feed.database_away()

    def peek(self, mac: str) -> tuple[bool, DeviceDocument | None]:
        """(True, the document or None) when memory is current; (False, None) when the
        database must be read. Counts nothing: the caller knows whether it answered."""
        if self._current():
            return True, self._documents.get(mac)
        return False, None

    @property
    def state(self) -> CacheState:
        if self._current():
            return "memory"
        return "stale" if self._database_away() else "database"

    def _current(self) -> bool:
        # Each feed says yes only once it has loaded everything (SQLite's catches up first).
        return self.feed is not None and self.feed.current()

    # --- the feed's side ----------------------------------------------------------

    def replace_all(self, documents: dict[str, DeviceDocument]) -> None:
        self._documents = documents
        self._loaded = True
        # Tens of thousands of long-lived objects that the cycle collector would walk on
        # every full collection (a p99 of 84 ms at 10,000 configs, 8 ms at 200): moved out
        # of its reach. They hold no cycles; when replaced, reference counting frees them.
        gc.freeze()
        self.metrics.reloads.labels("full").inc()
        self.metrics.current.set(1)

    def apply(self, macs: Iterable[str], found: dict[str, DeviceDocument]) -> None:
        """The newest documents of `macs`; a MAC not in `found` has no config any more."""
        count = 0
        for mac in macs:
            document = found.get(mac)
            if document is None:
                self._documents.pop(mac, None)
            else:
                self._documents[mac] = document
            count += 1
        self.metrics.reloads.labels("changed").inc(count)

    def lost(self) -> None:
        """The feed is away (it says so through `current()` until its next full load)."""
        self.metrics.current.set(0)

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        if self.feed is not None:
            self.feed.start()

    def stop(self) -> None:
        if self.feed is not None:
            self.feed.stop()

    def settle(self) -> None:
        if self.feed is not None:
            self.feed.settle()


# What device fetches read: a commit that wrote these waits for every worker (settle).
_DEVICE_TABLES = frozenset({DeviceConfig.__tablename__, DeviceCredential.__tablename__})


@event.listens_for(Session, "after_flush")
def _note_device_objects(session: Session, _flush: UOWTransaction) -> None:
    for instance in (*session.new, *session.dirty, *session.deleted):
        if isinstance(instance, DeviceConfig | DeviceCredential):
            session.info[DEVICES_CHANGED_KEY] = True
            return


@event.listens_for(Session, "do_orm_execute")
def _note_device_statements(execute: ORMExecuteState) -> None:
    if execute.is_insert or execute.is_update or execute.is_delete:
        table = getattr(execute.statement, "table", None)
        if getattr(table, "name", None) in _DEVICE_TABLES:
            execute.session.info[DEVICES_CHANGED_KEY] = True


def build_device_cache(
    settings: Settings, database: Database, registry: CollectorRegistry
) -> DeviceCache:
    """The cache with the feed of this database; it answers from memory once started."""
    cache = DeviceCache(CacheMetrics(registry))
    if settings.is_sqlite:
        from iotsupport.device_cache.sqlite import JournalFeed

        cache.feed = JournalFeed(cache, database)
    else:
        from iotsupport.device_cache.postgres import NotificationFeed

        cache.feed = NotificationFeed(cache, database, settings)
    cache.metrics.current.set(0)
    database.announcement_barrier = cache.settle
    return cache
