"""The one intake: every kind of device report, batched per kind and written off the
request path by one background thread per worker.

A report is noted in memory (a dict assignment under a lock), merged with a pending report
of the same key (the newest wins), and written every CHECKIN_FLUSH_SECONDS in keys' order
(so that two workers' writers lock rows in the same order and never deadlock on
PostgreSQL). A kind may call a report urgent (`ReportKind.urgent`): that one is written
before `record` returns, so it is lost at most with the request that carried it. When
that write fails, the report waits with the others, and for one interval no report is
written on the request path (a database that is away must not slow every device fetch);
the device's next report after that is urgent again.

A new kind (health, logs, core dumps) is a `ReportKind` and one `record` call.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t

from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from iotsupport.background import Periodic

log = logging.getLogger(__name__)

R = t.TypeVar("R")
_BATCH = 500  # reports per write transaction
AfterCommit = t.Callable[[], None]


class ReportKind(t.Protocol[R]):
    """One kind of report, keyed by an int (the device's config id for today's kinds)."""

    name: str  # for the log, e.g. "check-ins"

    def merge(self, pending: R | None, report: R) -> R:
        """One report for a key out of the pending one and a newer one."""

    def urgent(self, key: int, report: R) -> bool:
        """Must it be written before the request is answered?"""

    def write(self, session: Session, reports: list[tuple[int, R]]) -> AfterCommit:
        """Write reports sorted by key in the session's transaction; returns what to do
        once it committed."""


class _Queue(t.Generic[R]):
    def __init__(self, kind: ReportKind[R]) -> None:
        self.kind = kind
        self.pending: dict[int, R] = {}


class ReportIntake:
    """Per worker: the pending reports of every kind, and their one writer thread."""

    def __init__(
        self,
        session_factory: t.Callable[[], Session],
        *,
        interval: float = 2.0,
        on_written: t.Callable[[], None] | None = None,
    ) -> None:
        """`on_written` runs after reports were written (rollouts then re-evaluate)."""
        self._session_factory = session_factory
        self.on_written = on_written
        self._queues: dict[str, _Queue[t.Any]] = {}
        self._interval = interval
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._urgent_after = 0.0  # monotonic: no write on the request path before then
        self._writer = Periodic("device-reports", interval, self.flush)

    def add_kind(self, kind: ReportKind[t.Any]) -> None:
        self._queues[kind.name] = _Queue(kind)

    def record(self, kind: ReportKind[R], key: int, report: R) -> None:
        queue: _Queue[R] = self._queues[kind.name]
        if time.monotonic() < self._urgent_after or not kind.urgent(key, report):
            with self._lock:
                queue.pending[key] = kind.merge(queue.pending.get(key), report)
            return
        with self._lock:  # the pending one goes with it (it is older)
            report = kind.merge(queue.pending.pop(key, None), report)
        try:
            self._write(kind, [(key, report)])
        except SQLAlchemyError as exc:
            log.warning("%s not written now, queued: %s", kind.name, type(exc).__name__)
            self._urgent_after = time.monotonic() + self._interval
            self._requeue(queue, [(key, report)])
            return
        if self.on_written is not None:
            self.on_written()

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        """Stop the background thread and write what is still pending."""
        self._writer.stop()

    def flush(self) -> int:
        """Write the pending reports now; returns how many were written."""
        written = 0
        with self._flush_lock:
            for queue in list(self._queues.values()):
                with self._lock:
                    pending, queue.pending = queue.pending, {}
                items = sorted(pending.items(), key=lambda item: item[0])
                for start in range(0, len(items), _BATCH):
                    batch = items[start : start + _BATCH]
                    try:
                        self._write(queue.kind, batch)
                    except SQLAlchemyError as exc:
                        log.warning(
                            "%s not written, retrying later: %s",
                            queue.kind.name,
                            type(exc).__name__,
                        )
                        self._requeue(queue, batch)
                        continue
                    written += len(batch)
        if written and self.on_written is not None:
            self.on_written()
        return written

    def _write(self, kind: ReportKind[R], reports: list[tuple[int, R]]) -> None:
        for attempt in range(2):
            try:
                with self._session_factory() as session, session.begin():
                    after = kind.write(session, reports)
            except IntegrityError:
                if attempt:
                    raise
                continue  # another worker inserted one of these rows first: update it now
            after()
            return

    def _requeue(self, queue: _Queue[R], reports: list[tuple[int, R]]) -> None:
        with self._lock:
            for key, report in reports:
                newer = queue.pending.get(key)
                queue.pending[key] = report if newer is None else queue.kind.merge(report, newer)
