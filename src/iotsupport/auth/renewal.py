"""Renewing a session with its refresh token, without letting cookies drive the provider.

The refresh cookie is the provider's refresh token sealed with an HMAC under a key
only the server holds (RefreshSeal): a cookie the server did not issue is refused
before it costs anything, so random cookies neither reach the provider nor use up
the renewal budget below that genuine sessions need.

A sealed refresh cookie costs at most one call to the provider's token endpoint: the
outcome is remembered for a while (a refused token for REFUSED_SECONDS, new
tokens for RENEWED_SECONDS, so that a page's parallel requests share one
renewal), concurrent requests with the same token wait for one call, and calls
for tokens never seen before are rate-limited per process. Over the limit, the
request gets a 503 with Retry-After and keeps its cookies.
"""

from __future__ import annotations

import hashlib
import threading
import time
import typing as t
from collections import OrderedDict
from dataclasses import dataclass

from itsdangerous import BadSignature
from itsdangerous import Signer

from iotsupport.auth.oidc import Tokens
from iotsupport.auth.tokens import Principal
from iotsupport.auth.tokens import TokenRejected
from iotsupport.errors import ServiceUnavailable

Renewed = tuple[Tokens, Principal]
REFUSED_SECONDS = 600.0
RENEWED_SECONDS = 30.0
BURST = 10  # calls at once
PER_SECOND = 1.0  # calls per second in the long run
MAX_REMEMBERED = 10_000
RETRY_SECONDS = 5


class RefreshSeal:
    """The refresh cookie's value: the refresh token and an HMAC-SHA256 of it.

    The key is derived from OIDC_CLIENT_SECRET (every replica has it; the salt keeps
    this use apart from the login cookie's). A new secret ends every session once.
    """

    def __init__(self, secret: str) -> None:
        self._signer = Signer(secret, salt="iotsupport.refresh", digest_method=hashlib.sha256)

    def seal(self, refresh_token: str) -> str:
        return self._signer.sign(refresh_token).decode("utf-8")

    def opened(self, cookie: str) -> str | None:
        """The refresh token in a cookie this server issued; None for any other cookie."""
        try:
            return self._signer.unsign(cookie).decode("utf-8")
        except (BadSignature, UnicodeError):
            return None


class RenewalBusy(ServiceUnavailable):
    code = "renewal_busy"
    headers = {"Retry-After": str(RETRY_SECONDS)}


@dataclass(frozen=True)
class _Outcome:
    until: float
    renewed: Renewed | None  # None: refused
    reason: str = ""


class RenewalGate:
    """Wraps the provider's refresh call; one per process."""

    def __init__(
        self,
        refresh: t.Callable[[str], Renewed],
        *,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self._refresh = refresh
        self._clock = clock
        self._lock = threading.Lock()
        self._outcomes: OrderedDict[str, _Outcome] = OrderedDict()
        self._calls: dict[str, threading.Lock] = {}
        self._allowance = float(BURST)
        self._checked_at = clock()

    def renew(self, refresh_token: str) -> Renewed:
        """New tokens for `refresh_token`; TokenRejected when the provider refuses it."""
        key = hashlib.sha256(refresh_token.encode("utf-8", "replace")).hexdigest()
        remembered = self._remembered(key)
        if remembered is not None:
            return _replay(remembered)
        with self._lock:
            call_lock = self._calls.setdefault(key, threading.Lock())
        with call_lock:  # one call per token at a time; the others get its outcome
            remembered = self._remembered(key)
            if remembered is not None:
                return _replay(remembered)
            if not self._may_call():
                raise RenewalBusy(
                    "too many session renewals at once; try again shortly",
                    {"retry_after_seconds": RETRY_SECONDS},
                )
            try:
                renewed = self._refresh(refresh_token)
            except TokenRejected as exc:
                self._remember(key, _Outcome(self._clock() + REFUSED_SECONDS, None, str(exc)))
                raise
            finally:
                with self._lock:
                    self._calls.pop(key, None)
            self._remember(key, _Outcome(self._clock() + RENEWED_SECONDS, renewed))
            return renewed

    def _remembered(self, key: str) -> _Outcome | None:
        with self._lock:
            outcome = self._outcomes.get(key)
            if outcome is not None and outcome.until <= self._clock():
                del self._outcomes[key]
                return None
            return outcome

    def _remember(self, key: str, outcome: _Outcome) -> None:
        with self._lock:
            self._outcomes[key] = outcome
            self._outcomes.move_to_end(key)
            while len(self._outcomes) > MAX_REMEMBERED:
                self._outcomes.popitem(last=False)

    def _may_call(self) -> bool:
        """A token bucket: BURST calls at once, PER_SECOND after that."""
        with self._lock:
            now = self._clock()
            elapsed = now - self._checked_at
            self._allowance = min(float(BURST), self._allowance + elapsed * PER_SECOND)
            self._checked_at = now
            if self._allowance < 1:
                return False
            self._allowance -= 1
            return True


def _replay(outcome: _Outcome) -> Renewed:
    if outcome.renewed is None:
        raise TokenRejected(f"refused earlier: {outcome.reason}")
    return outcome.renewed
