"""Device tokens and the credential decision, as pure functions.

`check` decides from the stored credential state, the presented token's hash and
the time alone: no database, no Flask. A per-process cache of the state (issue 16)
can call it as it is; what the decision asks to be written (retire the previous
token, tell the broker) comes back in the verdict for the caller to record.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

TOKEN_PREFIX = "iotd_"
# 32 random bytes = 256 bits, in 43 URL-safe characters after the prefix.
TOKEN_BYTES = 32
# Compared against when there is nothing to compare with, so an unknown MAC costs
# the same work as a known one.
_DUMMY_HASH = hashlib.sha256(b"iotsupport: no credential").hexdigest()
_MAX_TOKEN_LENGTH = 256


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What is stored of a token: its SHA-256 (a 256-bit random secret needs no slow hash)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def looks_like_token(text: str) -> bool:
    """A device token, or a near miss of one (`IOTD_...`): either is checked, and refused
    like any wrong token, never taken for some other credential."""
    return text[: len(TOKEN_PREFIX)].lower() == TOKEN_PREFIX and len(text) <= _MAX_TOKEN_LENGTH


@dataclass(frozen=True, slots=True)
class CredentialState:
    """What the decision needs of a stored credential (a row of device_credentials)."""

    config_id: int
    mac_address: str
    token_hash: str
    previous_hash: str | None
    previous_expires_at: datetime | None
    broker_hash: str | None


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    used_previous: bool = False
    # First use of the newest token while the one before still lives: retire that one.
    retire_previous: bool = False
    # The broker account does not have the token just proved (dynsec only).
    broker_behind: bool = False


REFUSED = Verdict(False)


def check(state: CredentialState | None, presented: str, now: datetime) -> Verdict:
    """Is `presented` (a token hash) valid for `state`? Constant time, known MAC or not."""
    current = state.token_hash if state is not None else _DUMMY_HASH
    previous = _DUMMY_HASH
    if state is not None and state.previous_hash is not None:
        if state.previous_expires_at is None or now < state.previous_expires_at:
            previous = state.previous_hash
    # Both comparisons always run: the time taken says nothing about which matched.
    is_current = hmac.compare_digest(presented, current)
    is_previous = hmac.compare_digest(presented, previous)
    if state is None or not (is_current or is_previous):
        return REFUSED
    if is_previous:
        return Verdict(True, used_previous=True)
    return Verdict(
        True,
        retire_previous=state.previous_hash is not None,
        broker_behind=state.broker_hash != state.token_hash,
    )


@dataclass(frozen=True, slots=True)
class Rotation:
    token_hash: str
    previous_hash: str | None
    previous_expires_at: datetime | None


class Superseded(Exception):
    """A self-rotation with a token an admin's rotation superseded: never allowed."""


def superseded(state: CredentialState, used: str) -> bool:
    """Is `used` the token an admin's rotation superseded (kept for its grace only)?

    `previous_expires_at` is set by an admin's rotation alone, and only while the
    newest token is the admin's and unused (a self-rotation clears it, the first use
    of the newest retires the previous with it)."""
    return used == state.previous_hash and state.previous_expires_at is not None


def rotate(
    state: CredentialState,
    new_hash: str,
    *,
    used: str | None,
    expires_at: datetime | None,
    now: datetime,
) -> Rotation:
    """The credential after a new token: the device keeps a token that works.

    `used` is the hash the device authenticated with (self-rotation), None for an admin.
    Invariant: whenever `previous_hash` is set, `token_hash` has never been used, so the
    device holds one of the two. A device rotating with its current token keeps that one
    as the previous; one rotating with the previous (it lost the last answer) keeps the
    previous, and the never-used newest (its own) is dropped. A token an admin's rotation
    superseded never rotates (Superseded): it could only be used to drop the admin's
    token, which is what a leak's holder wants. An admin's new token keeps the token the
    device last proved (the previous while it lives, else the current) until
    `expires_at`; an admin token never used is dropped by the next admin rotation, and
    a previous whose grace has passed is never brought back.
    """
    if used is not None:
        if superseded(state, used):
            raise Superseded()
        if used == state.previous_hash:
            return Rotation(new_hash, state.previous_hash, None)
        return Rotation(new_hash, used, None)
    alive = state.previous_expires_at is None or now < state.previous_expires_at
    held = state.previous_hash if state.previous_hash is not None and alive else state.token_hash
    return Rotation(new_hash, held, expires_at)
