"""Issue, rotate and revoke device tokens; the writes that follow a token's first use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from iotsupport.configs.service import config_for_update
from iotsupport.configs.tables import DeviceConfig
from iotsupport.credentials.accounts import BrokerAccounts
from iotsupport.credentials.tables import CREDENTIALS
from iotsupport.credentials.tables import DeviceCredential
from iotsupport.credentials.tokens import CredentialState
from iotsupport.credentials.tokens import Superseded
from iotsupport.credentials.tokens import check
from iotsupport.credentials.tokens import new_token
from iotsupport.credentials.tokens import rotate
from iotsupport.credentials.tokens import token_hash
from iotsupport.db.base import ANONYMOUS_ACTOR
from iotsupport.db.base import utcnow
from iotsupport.errors import DeviceUnauthorized
from iotsupport.errors import Forbidden
from iotsupport.errors import NotFound

# `issued_by` of a token the device asked for itself.
DEVICE_ACTOR = "device"


class TokenSuperseded(Forbidden):
    """403: the token is valid for its grace, but an admin's rotation superseded it."""

    code = "token_superseded"


@dataclass(frozen=True)
class IssuedToken:
    """A new token: the only moment it exists outside the device."""

    token: str
    issued_at: datetime
    mac_address: str


def state_of(credential: DeviceCredential, mac_address: str) -> CredentialState:
    return CredentialState(
        credential.config_id,
        mac_address,
        credential.token_hash,
        credential.previous_hash,
        credential.previous_expires_at,
        credential.broker_hash,
    )


class CredentialService:
    def __init__(
        self,
        session: Session,
        accounts: BrokerAccounts,
        *,
        grace: timedelta,
        actor: str = ANONYMOUS_ACTOR,
    ) -> None:
        """`grace`: how long an admin's rotation keeps the device's token
        (DEVICE_TOKEN_GRACE_HOURS)."""
        self.session = session
        self.accounts = accounts
        self.grace = grace
        self.actor = actor

    def issue(self, config_id: int) -> IssuedToken:
        """A new token for the device. With one already, a rotation: the token the device
        holds keeps working until the new one is used or the grace has passed."""
        config = self._config_for_update(config_id)
        credential = self._credential_for_update(config_id)
        token, now = new_token(), utcnow()
        if credential is None:
            self.session.add(
                DeviceCredential(
                    config_id=config_id,
                    token_hash=token_hash(token),
                    issued_at=now,
                    issued_by=self.actor,
                )
            )
            self.session.flush()
            self.accounts.set_password(self.session, config_id, config.mac_address, token)
        else:
            state = state_of(credential, config.mac_address)
            rotated = rotate(
                state, token_hash(token), used=None, expires_at=now + self.grace, now=now
            )
            self._store(credential, rotated.token_hash, rotated.previous_hash, now)
            credential.previous_expires_at = rotated.previous_expires_at
            credential.issued_by = self.actor
            self.session.flush()
        return IssuedToken(token, now, config.mac_address)

    def rotate_own(self, config_id: int, used_hash: str) -> IssuedToken:
        """The device asked for a fresh token with `used_hash`; the one it holds stays valid
        until a fresh one is used, however often it asks (see tokens.rotate).

        Decided again under the row's lock, from the state as it is now: a token retired
        or superseded since the access check gets the answer it would get now."""
        config = self._config_for_update(config_id)
        credential = self._credential_for_update(config_id)
        token, now = new_token(), utcnow()
        state = state_of(credential, config.mac_address) if credential is not None else None
        if state is None or not check(state, used_hash, now).accepted:
            raise DeviceUnauthorized()
        try:
            rotated = rotate(state, token_hash(token), used=used_hash, expires_at=None, now=now)
        except Superseded:
            raise TokenSuperseded(
                "an admin issued this device a new token: this one may fetch until its grace "
                "ends but cannot rotate; install the new token"
            ) from None
        assert credential is not None
        self._store(credential, rotated.token_hash, rotated.previous_hash, now)
        credential.previous_expires_at = rotated.previous_expires_at
        credential.issued_by = DEVICE_ACTOR
        self.session.flush()
        return IssuedToken(token, now, config.mac_address)

    def revoke(self, config_id: int) -> None:
        """Remove the credential: its tokens stop working with the next request."""
        config = self._config_for_update(config_id)
        credential = self._credential_for_update(config_id)
        if credential is None:
            raise NotFound(f"config {config_id} has no credential")
        self.session.delete(credential)
        self.session.flush()
        self.accounts.forget(self.session, config_id, config.mac_address)

    def after_first_use(
        self, state: CredentialState, token: str, *, retire: bool, broker: bool
    ) -> None:
        """The newest token was used: the previous one is done, and the broker follows."""
        if retire:
            self.session.execute(
                update(CREDENTIALS)
                .where(
                    CREDENTIALS.c.config_id == state.config_id,
                    CREDENTIALS.c.token_hash == state.token_hash,
                )
                .values(previous_hash=None, previous_expires_at=None)
            )
        if broker:
            self.accounts.set_password(self.session, state.config_id, state.mac_address, token)

    def _store(
        self, credential: DeviceCredential, new_hash: str, previous: str | None, now: datetime
    ) -> None:
        credential.token_hash = new_hash
        credential.previous_hash = previous
        credential.issued_at = now

    def _config_for_update(self, config_id: int) -> DeviceConfig:
        return config_for_update(self.session, config_id)

    def _credential_for_update(self, config_id: int) -> DeviceCredential | None:
        query = (
            select(DeviceCredential)
            .where(DeviceCredential.config_id == config_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return self.session.scalars(query).one_or_none()
