"""The tables of device credentials and of the broker account changes still to be made."""

from __future__ import annotations

import typing as t
from datetime import datetime

from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from iotsupport.db.base import Base
from iotsupport.db.base import UTCDateTime

# SHA-256 in hex: what is stored of a token (the token itself never is).
HASH_LENGTH = 64


class DeviceCredential(Base):
    """A device's token, kept as a hash, keyed by its config.

    No foreign key: like check-ins and history, a credential outlives a config's delete,
    so restoring the config brings its credential back (a deleted config's token opens
    nothing: every lookup joins the live config).

    Rotation: `token_hash` is the newest token; while it has not been used, the token
    the device held before stays valid as `previous_hash` (until `previous_expires_at`,
    when an admin rotated; without expiry, when the device rotated itself).
    """

    __tablename__ = "device_credentials"

    config_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    token_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), unique=True)
    previous_hash: Mapped[str | None] = mapped_column(String(HASH_LENGTH), unique=True)
    previous_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    issued_by: Mapped[str] = mapped_column(String(255))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_from: Mapped[str | None] = mapped_column(String(64))
    # The token the device's broker account has (MQTT_DEVICE_ACCOUNTS=dynsec): the one
    # the device last proved over HTTP, or the first one issued.
    broker_hash: Mapped[str | None] = mapped_column(String(HASH_LENGTH))


class BrokerAccountChange(Base):
    """The state a device's broker account must reach, until the broker confirms it.

    One row per account (the MAC): a newer change replaces an older one, so a retry
    always sends the latest wish. `password` is the token sealed with a key derived
    from MQTT_PASSWORD (dynsec needs the token itself); the row goes once confirmed.
    """

    __tablename__ = "broker_account_changes"

    username: Mapped[str] = mapped_column(String(17), primary_key=True)
    action: Mapped[str] = mapped_column(String(8))  # "upsert" or "delete"
    sealed_password: Mapped[str | None] = mapped_column(Text)
    serial: Mapped[int] = mapped_column(Integer)  # changes with every new wish
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(255))


class ServerSecret(Base):
    """A random secret every replica shares, made by the first one that needs it
    (credentials/signed_urls.py): no setting has to be the same everywhere, and none
    can be left at a default everybody knows."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))  # hex
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# The Core tables, typed as tables, for statements that run over many rows at once.
CREDENTIALS = t.cast(Table, DeviceCredential.__table__)
BROKER_CHANGES = t.cast(Table, BrokerAccountChange.__table__)
