"""Signed uploads: RSA PKCS#1 v1.5 / SHA-256 over the timestamp text, within a time window."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from iotsupport.errors import InvalidInput
from iotsupport.errors import StartupError

# Longer input cannot be a timestamp or a signature of any sane key; refuse it unread.
MAX_TIMESTAMP_CHARS = 64
MAX_SIGNATURE_CHARS = 4096


class InvalidTimestamp(InvalidInput):
    code = "invalid_timestamp"


class TimestampTooOld(InvalidInput):
    code = "timestamp_too_old"


class TimestampInFuture(InvalidInput):
    code = "timestamp_in_future"


class InvalidSignatureEncoding(InvalidInput):
    code = "invalid_signature_encoding"


class SignatureMismatch(InvalidInput):
    code = "signature_mismatch"


def load_verification_key(path: Path) -> RSAPublicKey:
    """The public half of the RSA key at `path` (a PEM private or public key)."""
    where = f"SIGNING_KEY_PATH ({path})"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StartupError(f"{where} cannot be read: {exc.strerror or exc}") from None
    key: object
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise StartupError(
            f"{where} is an encrypted private key; give an unencrypted one or the public key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            raise StartupError(f"{where} is not a PEM RSA private or public key") from None
    if isinstance(key, RSAPrivateKey):
        return key.public_key()
    if isinstance(key, RSAPublicKey):
        return key
    raise StartupError(f"{where} holds a {type(key).__name__}; uploads are signed with RSA")


def load_signing_key(path: Path) -> RSAPrivateKey:
    """The RSA private key a CI job signs with (PEM, unencrypted)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ValueError(f"{path} cannot be read: {exc.strerror or exc}") from None
    except (TypeError, ValueError, UnsupportedAlgorithm):
        raise ValueError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return key


def sign_timestamp(key: RSAPrivateKey, timestamp: str) -> str:
    """What a CI job sends as `signature` for `timestamp`."""
    raw = key.sign(timestamp.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode("ascii")


class UploadVerifier:
    """Checks an upload's timestamp and signature, each with its own refusal."""

    def __init__(self, public_key: RSAPublicKey, tolerance_seconds: int) -> None:
        self.public_key = public_key
        self.tolerance_seconds = tolerance_seconds

    def check_timestamp(self, timestamp: str, now: datetime) -> datetime:
        """The signed instant, in UTC; a timestamp without an offset is UTC."""
        try:
            if len(timestamp) > MAX_TIMESTAMP_CHARS:
                raise ValueError
            signed_at = datetime.fromisoformat(timestamp)
        except ValueError:
            raise InvalidTimestamp(
                "timestamp is not an ISO 8601 date and time, e.g. 2026-11-24T13:50:00+00:00"
            ) from None
        if signed_at.tzinfo is None:
            signed_at = signed_at.replace(tzinfo=UTC)
        signed_at = signed_at.astimezone(UTC)
        skew = (signed_at - now).total_seconds()
        details = {"server_time": now.isoformat(), "tolerance_seconds": self.tolerance_seconds}
        if skew < -self.tolerance_seconds:
            raise TimestampTooOld(
                f"timestamp is more than {self.tolerance_seconds} s in the past; sign a fresh one",
                details,
            )
        if skew > self.tolerance_seconds:
            raise TimestampInFuture(
                f"timestamp is more than {self.tolerance_seconds} s in the future; "
                "check the signer's clock",
                details,
            )
        return signed_at

    def check_signature(self, timestamp: str, signature: str) -> bytes:
        """The decoded signature, once it verifies over the exact timestamp text."""
        try:
            if len(signature) > MAX_SIGNATURE_CHARS:
                raise ValueError
            raw = base64.b64decode(signature.strip(), validate=True)
        except (ValueError, binascii.Error):
            raw = b""
        if not raw:
            raise InvalidSignatureEncoding("signature is not base64")
        try:
            self.public_key.verify(
                raw, timestamp.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            raise SignatureMismatch(
                "signature does not verify: sign the timestamp with the server's key"
            ) from None
        return raw
