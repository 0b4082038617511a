"""Signed download URLs: a short-lived capability for one device and one path.

`GET /api/device/firmware` offers, beside the plain URL (downloaded with the device's
token), `<path>?device=<mac>&expires=<unix time>&signature=<HMAC>`: it works without
an `Authorization` header (an OTA client that cannot send one, an HTTP cache on the
way) until it expires, for that path only, as that device.

The HMAC-SHA256 key is derived from a random secret in the database (`server_secrets`,
made by the first replica that needs it), so every replica signs and checks alike and
no setting can leave it at a known default. The signed message names a version of the
scheme, the path (the release: model and version), the device and the expiry; changing
any of them, or the signature, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import threading
from urllib.parse import urlencode

from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import MultiDict

from iotsupport.credentials.tables import ServerSecret
from iotsupport.db import Database
from iotsupport.db.base import utcnow

# How long an offered URL works: at least this, at most a quarter more (the expiry is
# rounded up, so one device is offered the same URL for a while: an HTTP cache can use it).
SIGNED_URL_SECONDS = 900
_ROUND_SECONDS = SIGNED_URL_SECONDS // 4
SECRET_NAME = "signed-urls"
PARAMS = ("device", "expires", "signature")
_SCHEME = "iotsupport-signed-url-v1"
_MAX_EXPIRES_DIGITS = 12


class UrlSigner:
    """Per process: signs and checks; the key is read (or made) once, on first use."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def sign(self, path: str, mac: str, now: float) -> tuple[str, int]:
        """The query string that opens `path` for `mac`, and its expiry (unix seconds)."""
        expires = math.ceil((now + SIGNED_URL_SECONDS) / _ROUND_SECONDS) * _ROUND_SECONDS
        signature = self._signature(path, mac, expires)
        return urlencode({"device": mac, "expires": expires, "signature": signature}), expires

    def verify(self, path: str, args: MultiDict[str, str], now: float) -> tuple[str, int] | None:
        """The device (its MAC) and expiry a signed URL names, or None when it is not a
        valid one for `path` now: any part changed, expired, or a parameter twice."""
        values = [args.getlist(name) for name in PARAMS]
        if any(len(value) != 1 for value in values):
            return None
        mac, expires_text, signature = (value[0] for value in values)
        if not expires_text.isdigit() or len(expires_text) > _MAX_EXPIRES_DIGITS:
            return None
        expires = int(expires_text)
        expected = self._signature(path, mac, expires)
        # Compared before the expiry is looked at: the time taken says nothing.
        if not hmac.compare_digest(signature.encode(), expected.encode()) or expires <= now:
            return None
        return mac, expires

    @staticmethod
    def present(args: MultiDict[str, str]) -> bool:
        """Does the request carry a signed URL's parameters (any of them)?"""
        return any(name in args for name in PARAMS)

    def _signature(self, path: str, mac: str, expires: int) -> str:
        message = "\n".join((_SCHEME, path, mac, str(expires))).encode("utf-8", "surrogateescape")
        digest = hmac.new(self._signing_key(), message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _signing_key(self) -> bytes:
        if self._key is None:
            with self._lock:
                if self._key is None:
                    secret = bytes.fromhex(shared_secret(self._database, SECRET_NAME))
                    self._key = hmac.new(secret, _SCHEME.encode(), hashlib.sha256).digest()
        return self._key


def shared_secret(database: Database, name: str) -> str:
    """The secret `name` (hex), made now if no replica has made it yet."""
    with database.session() as session:
        row = session.get(ServerSecret, name)
        if row is not None:
            return row.value
        session.add(ServerSecret(name=name, value=secrets.token_hex(32), created_at=utcnow()))
        try:
            session.commit()
        except IntegrityError:  # another replica made it first: use theirs
            session.rollback()
        row = session.get(ServerSecret, name, populate_existing=True)
        assert row is not None
        return row.value
