"""Broker accounts for devices through Mosquitto's dynamic-security plugin.

With MQTT_DEVICE_ACCOUNTS=dynsec each device with a credential has a broker
account: user name its MAC, password its token, client id its MAC (no other), and a
role of its own that may subscribe to (and receive) `iotsupport/devices/<mac>/#` and
the legacy `iotsupport/updates/#` broadcasts, and publish only under
`iotsupport/devices/<mac>/reported`, and to its own `health` and `status` topics.
Before its first change the server sets the broker's default ACL access to deny.
The account always has the token the device
last proved over HTTP (or the first one issued): an admin's rotation reaches the
broker when the device first uses the new token, or, once the grace has passed,
the account is removed until it does.

Every wanted change is a row of `broker_account_changes`, written in the same
transaction as the credential change (the token sealed with a key derived from
MQTT_PASSWORD), sent after commit by a background thread and retried with backoff
until the broker confirms it; only then is the row deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from iotsupport.background import Periodic
from iotsupport.configs.tables import DeviceConfig
from iotsupport.credentials.accounts import NO_BROKER_ACCOUNTS
from iotsupport.credentials.accounts import BrokerAccounts
from iotsupport.credentials.broker import BrokerRefused
from iotsupport.credentials.broker import DynsecClient
from iotsupport.credentials.broker import Sealer
from iotsupport.credentials.broker import Unsealable
from iotsupport.credentials.tables import BROKER_CHANGES
from iotsupport.credentials.tables import CREDENTIALS
from iotsupport.credentials.tokens import token_hash
from iotsupport.db import Database
from iotsupport.db import after_commit
from iotsupport.db.base import utcnow
from iotsupport.settings import Settings

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0  # how often the queue is looked at when nothing wakes it
LEASE = timedelta(seconds=60)  # a claimed change is another worker's again after this
MAX_BACKOFF_SECONDS = 300
_BATCH = 50
_CHANGES = BROKER_CHANGES
_CREDENTIALS = CREDENTIALS


@dataclass(frozen=True)
class Wanted:
    """A claimed row of broker_account_changes."""

    username: str
    action: str
    sealed_password: str | None
    serial: int
    attempts: int


class BrokerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.changes = Counter(
            "iotsupport_broker_account_changes",
            "Device broker account changes sent, by outcome (confirmed, failed).",
            ["outcome"],
            registry=registry,
        )


class DynsecAccounts:
    """MQTT_DEVICE_ACCOUNTS=dynsec (see the module docstring)."""

    def __init__(self, settings: Settings, database: Database, registry: CollectorRegistry):
        assert settings.mqtt_password
        self._prepared = False  # the broker's defaults and our role, once per process
        self._database = database
        self._sealer = Sealer(settings.mqtt_password)
        self._client = DynsecClient(settings)
        self._metrics = BrokerMetrics(registry)
        self._worker = Periodic("broker-accounts", RETRY_SECONDS, self.process)

    @property
    def enabled(self) -> bool:
        return True

    def set_password(self, session: Session, config_id: int, mac: str, token: str) -> None:
        self._want(session, mac, "upsert", self._sealer.seal(mac, token))
        session.execute(
            update(_CREDENTIALS)
            .where(_CREDENTIALS.c.config_id == config_id)
            .values(broker_hash=token_hash(token))
        )

    def forget(self, session: Session, config_id: int, mac: str) -> None:
        self._want(session, mac, "delete", None)
        session.execute(
            update(_CREDENTIALS)
            .where(_CREDENTIALS.c.config_id == config_id)
            .values(broker_hash=None)
        )

    def pending(self) -> int | None:
        return self._database.call_with_deadline(
            lambda session: session.scalar(select(func.count()).select_from(_CHANGES)) or 0
        )

    def start(self) -> None:
        self._worker.start()
        self._worker.wake()

    def stop(self) -> None:
        # No last run: what is not confirmed waits in the database for the next start.
        self._worker.stop(final=False)
        self._client.close()

    def _want(self, session: Session, mac: str, action: str, sealed: str | None) -> None:
        now = utcnow()
        values = {
            "username": mac,
            "action": action,
            "sealed_password": sealed,
            "serial": 1,
            "queued_at": now,
            "attempts": 0,
            "next_attempt_at": now,
            "claimed_until": None,
            "last_error": None,
        }
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        statement = dialect.insert(_CHANGES).values(values)
        changed = {key: value for key, value in values.items() if key not in ("username", "serial")}
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[_CHANGES.c.username],
                set_={**changed, "serial": _CHANGES.c.serial + 1},
            )
        )
        after_commit(session, self._worker.wake)

    # --- the background worker -------------------------------------------------------

    def process(self) -> int:
        """Expire old tokens, then send what is due; returns how many the broker confirmed."""
        if not self._prepared:
            try:
                self._client.deny_by_default()
            except (OSError, TimeoutError, BrokerRefused) as exc:
                log.warning("broker accounts: the broker's defaults not set yet: %s", exc)
                return 0
            self._prepared = True
        try:
            self._expire_rotations()
            claimed = self._claim()
        except SQLAlchemyError as exc:
            log.warning("broker accounts: database unavailable: %s", type(exc).__name__)
            return 0
        confirmed = 0
        for change in claimed:
            try:
                self._send(change)
            except Unsealable:
                log.warning(
                    "broker account %s: sealed token unreadable; waiting for the "
                    "device's next request to set it",
                    change.username,
                )
                self._abandon(change)
                continue
            except (OSError, TimeoutError, BrokerRefused) as exc:
                self._metrics.changes.labels("failed").inc()
                self._retry_later(change, str(exc))
                log.warning("broker account %s not changed yet: %s", change.username, exc)
                continue
            self._metrics.changes.labels("confirmed").inc()
            self._done(change)
            confirmed += 1
        return confirmed

    def _expire_rotations(self) -> None:
        """An admin's rotation whose grace has passed: the old token goes, on the broker too."""
        now = utcnow()
        with self._database.session() as session:
            expired = session.execute(
                select(
                    _CREDENTIALS.c.config_id,
                    DeviceConfig.__table__.c.mac_address,
                    _CREDENTIALS.c.previous_hash,
                    _CREDENTIALS.c.broker_hash,
                )
                .select_from(
                    _CREDENTIALS.join(
                        DeviceConfig.__table__,
                        DeviceConfig.__table__.c.id == _CREDENTIALS.c.config_id,
                    )
                )
                .where(_CREDENTIALS.c.previous_expires_at <= now)
                .with_for_update(of=_CREDENTIALS)
            ).all()
            for row in expired:
                session.execute(
                    update(_CREDENTIALS)
                    .where(_CREDENTIALS.c.config_id == row.config_id)
                    .values(previous_hash=None, previous_expires_at=None)
                )
                if row.broker_hash is not None and row.broker_hash == row.previous_hash:
                    self.forget(session, row.config_id, row.mac_address)
            session.commit()

    def _claim(self) -> list[Wanted]:
        now = utcnow()
        claimed = []
        columns = _CHANGES.c
        with self._database.session() as session:
            due = session.execute(
                select(
                    columns.username,
                    columns.action,
                    columns.sealed_password,
                    columns.serial,
                    columns.attempts,
                )
                .where(
                    columns.next_attempt_at <= now,
                    or_(columns.claimed_until.is_(None), columns.claimed_until < now),
                )
                .order_by(columns.queued_at)
                .limit(_BATCH)
            ).all()
            for row in due:
                change = Wanted(*row)
                # Compare-and-set: another worker that claimed it first wins.
                won = session.connection().execute(
                    update(_CHANGES)
                    .where(
                        columns.username == change.username,
                        columns.serial == change.serial,
                        or_(columns.claimed_until.is_(None), columns.claimed_until < now),
                    )
                    .values(claimed_until=now + LEASE)
                )
                if won.rowcount == 1:
                    claimed.append(change)
            session.commit()
        return claimed

    def _send(self, change: Wanted) -> None:
        if change.action == "delete":
            self._client.delete_account(change.username)
            return
        password = self._sealer.unseal(change.username, change.sealed_password or "")
        if password is None:
            raise Unsealable()
        self._client.set_account(change.username, password)

    def _done(self, change: Wanted) -> None:
        with self._database.session() as session:
            session.execute(
                delete(_CHANGES).where(
                    _CHANGES.c.username == change.username, _CHANGES.c.serial == change.serial
                )
            )
            session.commit()

    def _abandon(self, change: Wanted) -> None:
        """Drop the change and forget what the broker has: the device's next authenticated
        request sets its account again (see DeviceGate: broker_behind)."""
        configs = DeviceConfig.__table__.c
        with self._database.session() as session:
            session.execute(
                update(_CREDENTIALS)
                .where(
                    _CREDENTIALS.c.config_id.in_(
                        select(configs.id).where(configs.mac_address == change.username)
                    )
                )
                .values(broker_hash=None)
            )
            session.execute(
                delete(_CHANGES).where(
                    _CHANGES.c.username == change.username, _CHANGES.c.serial == change.serial
                )
            )
            session.commit()

    def _retry_later(self, change: Wanted, error: str) -> None:
        wait = min(MAX_BACKOFF_SECONDS, 2 ** min(change.attempts, 16))
        with self._database.session() as session:
            session.execute(
                update(_CHANGES)
                .where(_CHANGES.c.username == change.username, _CHANGES.c.serial == change.serial)
                .values(
                    attempts=_CHANGES.c.attempts + 1,
                    next_attempt_at=utcnow() + timedelta(seconds=wait),
                    claimed_until=None,
                    last_error=error[:255],
                )
            )
            session.commit()


def build_accounts(
    settings: Settings, database: Database, registry: CollectorRegistry
) -> BrokerAccounts:
    if settings.mqtt_device_accounts == "dynsec":
        return DynsecAccounts(settings, database, registry)
    return NO_BROKER_ACCOUNTS
