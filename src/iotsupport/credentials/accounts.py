"""The devices' broker accounts, as the services see them (MQTT_DEVICE_ACCOUNTS).

With `off` nothing happens; with `dynsec` (`credentials/dynsec.py`) each change is
written to the database in the same transaction as the credential change and sent
to the broker after commit, retried until the broker confirms it.
"""

from __future__ import annotations

import typing as t

from sqlalchemy.orm import Session


class BrokerAccounts(t.Protocol):
    @property
    def enabled(self) -> bool: ...

    def set_password(self, session: Session, config_id: int, mac: str, token: str) -> None:
        """The device's account should log in with `token` (created if missing)."""

    def forget(self, session: Session, config_id: int, mac: str) -> None:
        """The device's account should go (revoked, or its config deleted)."""

    def pending(self) -> int | None:
        """Changes the broker has not confirmed yet; None when accounts are off."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class NoBrokerAccounts:
    """MQTT_DEVICE_ACCOUNTS=off: the broker's accounts are not ours to manage."""

    @property
    def enabled(self) -> bool:
        return False

    def set_password(self, session: Session, config_id: int, mac: str, token: str) -> None:
        pass

    def forget(self, session: Session, config_id: int, mac: str) -> None:
        pass

    def pending(self) -> int | None:
        return None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


NO_BROKER_ACCOUNTS: BrokerAccounts = NoBrokerAccounts()
