"""Signed uploads: an RSA signature over what is uploaded, where to, and when.

The signed message binds the file to its name and to a fresh timestamp, so a
captured signature can upload nothing but the same bytes under the same name
within the time window (and only once; the caller records used signatures):

    iotsupport-upload-v2 \n <purpose> \n <timestamp> \n <name> \n <sha256>

five lines joined by a single LF, no trailing newline, UTF-8; `purpose` names
the endpoint (`asset` for POST /api/assets with the file's name; `release` for
POST /api/models/{code}/releases with the model's code as the name; `release-elf`
for a release's app ELF, named `{code}/{version}`), `sha256` is
the file's digest in lower-case hex. The signature is RSA PKCS#1 v1.5 with SHA-256, sent as base64.
Everything here is checked from the form fields, before the file is read;
`VerifiedUpload.check_file` compares the digest of the bytes that arrived.

The earlier scheme signed the timestamp text alone; it is accepted only when
the caller allows it (ASSET_LEGACY_SIGNATURES), for CI jobs not yet updated.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
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
SCHEME = "iotsupport-upload-v2"
ASSET_PURPOSE = "asset"
RELEASE_PURPOSE = "release"  # POST /api/models/{code}/releases; the name is the model's code
# POST /api/models/{code}/releases/{version}/elf; the name is "{code}/{version}"
RELEASE_ELF_PURPOSE = "release-elf"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


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


class InvalidSha256(InvalidInput):
    code = "invalid_sha256"


class Sha256Mismatch(InvalidInput):
    code = "sha256_mismatch"


def upload_message(*, purpose: str, timestamp: str, name: str, sha256: str) -> bytes:
    """The exact bytes an upload's signature covers (see the module's docstring)."""
    return "\n".join((SCHEME, purpose, timestamp, name, sha256.lower())).encode("utf-8")


def sign_upload(
    key: RSAPrivateKey, *, timestamp: str, name: str, sha256: str, purpose: str = ASSET_PURPOSE
) -> str:
    """What a CI job sends as `signature` for an upload of `name` with digest `sha256`."""
    message = upload_message(purpose=purpose, timestamp=timestamp, name=name, sha256=sha256)
    return _sign(key, message)


@dataclass(frozen=True)
class SignedFields:
    """What a signed upload carries besides its bytes."""

    timestamp: str
    name: str
    sha256: str | None  # None: the legacy scheme, over the timestamp alone
    signature: str


@dataclass(frozen=True)
class VerifiedUpload:
    signed_at: datetime  # UTC
    signature: bytes  # decoded; the caller accepts each one once
    sha256: str | None  # lower-case hex the bytes must have; None: legacy, anything

    def check_file(self, sha256: str) -> None:
        """Refuse bytes whose digest is not the one that was signed."""
        if self.sha256 is not None and sha256 != self.sha256:
            raise Sha256Mismatch(
                "the file's SHA-256 is not the one that was signed; nothing was stored",
                {"signed": self.sha256, "received": sha256},
            )


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
    """The legacy signature: over the timestamp text alone."""
    return _sign(key, timestamp.encode("utf-8"))


def _sign(key: RSAPrivateKey, message: bytes) -> str:
    raw = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode("ascii")


class UploadVerifier:
    """Checks a signed upload's fields, each with its own refusal, in this order:
    timestamp (format, too old, in the future), sha256 format, signature encoding,
    signature. The name must have passed the caller's own rules first."""

    def __init__(
        self,
        public_key: RSAPublicKey,
        tolerance_seconds: int,
        *,
        purpose: str = ASSET_PURPOSE,
        allow_legacy: bool = False,
    ) -> None:
        self.public_key = public_key
        self.tolerance_seconds = tolerance_seconds
        self.purpose = purpose
        self.allow_legacy = allow_legacy

    def verify(self, fields: SignedFields, now: datetime) -> VerifiedUpload:
        signed_at = self.check_timestamp(fields.timestamp, now)
        if fields.sha256 is None:
            if not self.allow_legacy:
                raise InvalidSha256("sha256 is required: sign the file's SHA-256 and its name")
            message = fields.timestamp.encode("utf-8")
            sha256 = None
        else:
            if not _SHA256.fullmatch(fields.sha256):
                raise InvalidSha256("sha256 must be the file's SHA-256 as 64 hex digits")
            sha256 = fields.sha256.lower()
            message = upload_message(
                purpose=self.purpose, timestamp=fields.timestamp, name=fields.name, sha256=sha256
            )
        signature = self._check_signature(message, fields.signature)
        return VerifiedUpload(signed_at, signature, sha256)

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

    def _check_signature(self, message: bytes, signature: str) -> bytes:
        """The decoded signature, once it verifies over `message`."""
        try:
            if len(signature) > MAX_SIGNATURE_CHARS:
                raise ValueError
            raw = base64.b64decode(signature.strip(), validate=True)
        except (ValueError, binascii.Error):
            raw = b""
        if not raw:
            raise InvalidSignatureEncoding("signature is not base64")
        try:
            self.public_key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            raise SignatureMismatch(
                "signature does not verify: sign the timestamp, name and SHA-256 of this file "
                "with the server's key"
            ) from None
        return raw
