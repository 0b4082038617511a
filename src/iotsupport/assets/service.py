"""Firmware uploads: a signed upload's checks in the contract's order, then one atomic replace.

Before the file is read (from the fields that precede it): missing_field,
unsafe_filename, invalid_timestamp, timestamp_too_old, timestamp_in_future,
invalid_sha256, invalid_signature_encoding, signature_mismatch,
signature_already_used. While it streams: asset_too_large. After it: the
SHA-256 of what arrived against the signed one (sha256_mismatch).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iotsupport.assets.names import check_filename
from iotsupport.assets.signing import ASSET_PURPOSE
from iotsupport.assets.signing import SignedFields
from iotsupport.assets.signing import UploadVerifier
from iotsupport.assets.signing import VerifiedUpload
from iotsupport.assets.signing import load_verification_key
from iotsupport.assets.store import AssetStore
from iotsupport.assets.store import StoredAsset
from iotsupport.assets.tables import UsedUploadSignature
from iotsupport.assets.upload import FILE_FIELD
from iotsupport.assets.upload import Upload
from iotsupport.db.base import utcnow
from iotsupport.errors import AppError
from iotsupport.errors import Conflict
from iotsupport.errors import InvalidInput
from iotsupport.errors import ServiceUnavailable
from iotsupport.outbox import announce_asset
from iotsupport.settings import Settings

log = logging.getLogger(__name__)

SIGNED_FIELDS = ("timestamp", "sha256", "signature")
# Whether a (timestamp, signature) digest was used already; read before the file is.
UsedCheck = Callable[[str], bool]


class MissingField(InvalidInput):
    code = "missing_field"


class SignatureReplayed(Conflict):
    code = "signature_already_used"


class AssetsNotConfigured(ServiceUnavailable):
    code = "assets_not_configured"


class AssetMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.uploads = Counter(
            "iotsupport_asset_uploads",
            "Firmware uploads by outcome: accepted, or the code of the refusal.",
            ["outcome"],
            registry=registry,
        )
        self.bytes_served = Counter(
            "iotsupport_asset_bytes_served",
            "Bytes of firmware sent to devices (full and partial downloads).",
            registry=registry,
        )

    @contextlib.contextmanager
    def counting_upload(self) -> Iterator[None]:
        """Count the upload inside the block as accepted, or by its refusal code."""
        try:
            yield
        except AppError as exc:
            self.uploads.labels(exc.code).inc()
            raise
        except Exception:
            self.uploads.labels("failed").inc()
            raise
        self.uploads.labels("accepted").inc()


@dataclass
class Assets:
    """What the asset endpoints need; built once by create_app when ASSETS_DIR is set."""

    store: AssetStore
    verifier: UploadVerifier | None  # None: SIGNING_KEY_PATH unset, uploads refused
    metrics: AssetMetrics

    def upload_verifier(self) -> UploadVerifier:
        if self.verifier is None:
            raise AssetsNotConfigured("uploads are off: SIGNING_KEY_PATH is not set")
        return self.verifier


def build_verifier(
    settings: Settings, *, purpose: str = ASSET_PURPOSE, allow_legacy: bool = False
) -> UploadVerifier | None:
    """The signature check for uploads of `purpose`; None when SIGNING_KEY_PATH is unset.
    Raises StartupError when the key is unusable."""
    if settings.signing_key_path is None:
        return None
    public_key = load_verification_key(settings.signing_key_path)
    return UploadVerifier(
        public_key,
        settings.timestamp_tolerance_seconds,
        purpose=purpose,
        allow_legacy=allow_legacy,
    )


def build_assets(settings: Settings, registry: CollectorRegistry) -> Assets | None:
    """Load the signing key (StartupError when unusable) and set up the folder."""
    verifier = build_verifier(settings, allow_legacy=settings.asset_legacy_signatures)
    if settings.assets_dir is None:
        return None
    store = AssetStore(settings.assets_dir, settings.asset_max_bytes)
    return Assets(store, verifier, AssetMetrics(registry))


def pair_digest(timestamp: str, signature: bytes) -> str:
    """The key a used (timestamp, signature) pair is kept under."""
    return hashlib.sha256(timestamp.encode("utf-8") + b"\0" + signature).hexdigest()


class AssetService:
    """Accepts a signed upload: `precheck` before the file is read, `accept` after it."""

    def __init__(
        self,
        session: Session,
        store: AssetStore,
        verifier: UploadVerifier,
        *,
        used: UsedCheck | None = None,
        now: datetime | None = None,
    ) -> None:
        self.session = session
        self.store = store
        self.verifier = verifier
        self.now = now or utcnow()
        self._used = used
        self._verified: VerifiedUpload | None = None

    def precheck(self, fields: Mapping[str, str], filename: str) -> None:
        """Every check the fields allow, as the file part begins (an OnFile callback).

        The signed fields must come before the file; with legacy signatures allowed,
        an upload without sha256 may send them after it and is checked at the end.
        """
        missing = [name for name in SIGNED_FIELDS if name not in fields]
        if self.verifier.allow_legacy and "sha256" not in fields:
            missing.remove("sha256")
            if missing:  # legacy clients may send the fields after the file
                return
        if missing:
            raise MissingField(
                f"missing form field(s) before the file: {', '.join(missing)}; send "
                "timestamp, sha256 and signature first, then the file part",
                {"missing": missing},
            )
        self._verified = self._check(fields, filename)

    def accept(self, upload: Upload, *, actor: str) -> StoredAsset:
        """Store the streamed file under its name, once the checks left have passed."""
        missing = [FILE_FIELD] if upload.file is None or upload.filename is None else []
        missing += [name for name in SIGNED_FIELDS if name not in upload.fields]
        if self.verifier.allow_legacy and "sha256" in missing:
            missing.remove("sha256")
        if missing:
            raise MissingField(
                f"missing form field(s): {', '.join(missing)}; send multipart/form-data with "
                "timestamp, sha256 and signature, then file (a file part with a filename)",
                {"missing": missing},
            )
        assert upload.file is not None and upload.filename is not None
        verified = self._verified or self._check(upload.fields, upload.filename)
        verified.check_file(upload.file.sha256)
        synced = upload.file.sync()  # before taking the pair's row lock, which others wait on
        self._use_once(upload.fields["timestamp"], verified)
        stored = self.store.publish(upload.file, upload.filename, synced)
        announce_asset(self.session, stored.name)  # on iotsupport/updates/assets
        log.info("asset %r stored: %d bytes, by %s", stored.name, stored.size, actor)
        return stored

    def _check(self, fields: Mapping[str, str], filename: str) -> VerifiedUpload:
        name = check_filename(filename)
        signed = SignedFields(
            timestamp=fields["timestamp"],
            name=name,
            sha256=fields.get("sha256"),
            signature=fields["signature"],
        )
        return verify_unused(self.verifier, signed, self.now, self._used)

    def _use_once(self, timestamp: str, verified: VerifiedUpload) -> None:
        use_once(self.session, timestamp, verified, self.now, self.verifier.tolerance_seconds)


def replayed() -> SignatureReplayed:
    return SignatureReplayed(
        "this timestamp and signature were used already; sign a fresh timestamp"
    )


def verify_unused(
    verifier: UploadVerifier, signed: SignedFields, now: datetime, used: UsedCheck | None
) -> VerifiedUpload:
    """The signature's checks, then 409 when its pair was used already (read before the
    file, on a connection of its own: `used`)."""
    verified = verifier.verify(signed, now)
    if used is not None and used(pair_digest(signed.timestamp, verified.signature)):
        raise replayed()
    return verified


def use_once(
    session: Session,
    timestamp: str,
    verified: VerifiedUpload,
    now: datetime,
    tolerance_seconds: int,
) -> None:
    """Record the pair; a second use, here or on another replica, is refused with 409."""
    digest = pair_digest(timestamp, verified.signature)
    if session.get(UsedUploadSignature, digest) is not None:
        raise replayed()
    session.add(UsedUploadSignature(digest=digest, signed_at=verified.signed_at, used_at=now))
    try:
        session.flush()  # waits for a concurrent insert of the same pair, then fails
    except IntegrityError:
        raise replayed() from None
    # Older pairs fail the timestamp check anyway (twice the window allows for clock skew).
    horizon = now - timedelta(seconds=2 * tolerance_seconds)
    prune = delete(UsedUploadSignature).where(UsedUploadSignature.signed_at < horizon)
    session.execute(prune.execution_options(synchronize_session=False))
