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
    return text.startswith(TOKEN_PREFIX) and len(text) <= _MAX_TOKEN_LENGTH


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


def rotate(
    state: CredentialState, new_hash: str, *, used: str | None, expires_at: datetime | None
) -> Rotation:
    """The credential after a new token: the device keeps a token that works.

    `used` is the hash the device authenticated with (self-rotation), None for an admin.
    Invariant: whenever `previous_hash` is set, `token_hash` has never been used, so the
    device holds one of the two. A device rotating with its current token keeps that one
    as the previous; one rotating with the previous (it lost the last answer) keeps the
    previous, and the never-used newest is dropped. An admin's new token keeps whichever
    the device holds (the previous if set, else the current) until `expires_at`.
    """
    if used is not None:
        if used == state.previous_hash:
            return Rotation(new_hash, state.previous_hash, state.previous_expires_at)
        return Rotation(new_hash, used, None)
    held = state.previous_hash if state.previous_hash is not None else state.token_hash
    return Rotation(new_hash, held, expires_at)
