"""A PostgreSQL worker's lease on answering device fetches from memory.

The worker renews it in one transaction that moves its row's `lease_until` on and
notifies the change channel with a nonce of its own. The lease starts from when that
transaction was *sent*, and is granted only when the nonce comes back: notifications
arrive in commit order, so by then the worker has applied every change committed
before the renewal. A change committed after the lease's start is therefore either
applied before the next lease starts, or waited out by the committer's settle, which
reads the rows: a worker's own lease never outlasts its row's `lease_until`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time

import psycopg
from sqlalchemy import Connection
from sqlalchemy import text

log = logging.getLogger(__name__)

CHANGES_CHANNEL = "iotsupport_devices"
ACKS_CHANNEL = "iotsupport_devices_applied"
# A MAC never contains a space: these prefixes mark the feed's own messages.
MARKER_PREFIX = "settle "
LEASE_PREFIX = "lease "
# What the worker takes off its own lease: scheduling between its check and its answer.
_MARGIN_SECONDS = 0.05
_RENEW = (
    "INSERT INTO device_cache_workers (name, lease_until) "
    "VALUES (%s, now() + make_interval(secs => %s)) "
    "ON CONFLICT (name) DO UPDATE SET lease_until = excluded.lease_until"
)
_FORGET_OLD = "DELETE FROM device_cache_workers WHERE lease_until < now() - interval '1 hour'"
_LIVE = text(
    "SELECT name, extract(epoch FROM lease_until - now()) AS left_seconds "
    "FROM device_cache_workers WHERE lease_until > now()"
)


class Lease:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        # Renewed often enough that a busy worker keeps it (ten tries per lease).
        self.renew_every = seconds / 10
        host = socket.gethostname().replace(" ", "")[:60]
        self.name = f"{host}/{os.getpid()}/{secrets.token_hex(4)}"
        self._lock = threading.Lock()
        self._valid_until = 0.0  # monotonic
        self._sent: dict[str, float] = {}  # nonce -> when its renewal was sent
        self._registered = False

    def valid(self) -> bool:
        return time.monotonic() < self._valid_until

    def end(self) -> None:
        with self._lock:
            self._valid_until = 0.0
            self._sent.clear()

    def renew(self, connection: psycopg.Connection) -> None:
        nonce = f"{LEASE_PREFIX}{self.name} {secrets.token_hex(4)}"
        sent = time.monotonic()
        with connection.transaction():
            if not self._registered:
                connection.execute(_FORGET_OLD)
                self._registered = True
            connection.execute(_RENEW, (self.name, self.seconds))
            connection.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, nonce))
        with self._lock:
            self._sent[nonce] = sent

    def arrived(self, payload: str) -> None:
        """A lease notification came back (another worker's is ignored)."""
        with self._lock:
            sent = self._sent.pop(payload, None)
            if sent is None:
                return
            for nonce, other in list(self._sent.items()):
                if other < sent:  # older renewals still in flight add nothing
                    del self._sent[nonce]
            self._valid_until = max(self._valid_until, sent + self.seconds - _MARGIN_SECONDS)

    def forget(self, connection: psycopg.Connection) -> None:
        """On a clean stop: the settles need not wait for this worker any more."""
        try:
            connection.execute("DELETE FROM device_cache_workers WHERE name = %s", (self.name,))
        except psycopg.Error as exc:
            log.info("device cache: lease not given back (%s)", type(exc).__name__)


def live_leases(connection: Connection) -> dict[str, float]:
    """Workers that may answer from memory now, and when (monotonic, here) each lease
    runs out at the latest, as the database reckons it."""
    rows = connection.execute(_LIVE).all()
    now = time.monotonic()  # after the answer: the reckoning errs on the long side
    return {str(row.name): now + float(row.left_seconds) for row in rows}
