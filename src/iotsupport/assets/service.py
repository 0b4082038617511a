"""Firmware assets: the folder devices download from, and the signed uploads that fill it.

Every upload is written to a temp file inside ASSETS_DIR while it arrives, then
fsynced and renamed over the old version: a reader sees the old file or the new
one, never half of one, and a refused or broken upload leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import tempfile
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iotsupport.assets.signing import UploadVerifier
from iotsupport.assets.signing import load_verification_key
from iotsupport.assets.tables import UsedUploadSignature
from iotsupport.db import after_commit
from iotsupport.db.base import utcnow
from iotsupport.errors import AppError
from iotsupport.errors import Conflict
from iotsupport.errors import InvalidInput
from iotsupport.errors import NotFound
from iotsupport.errors import PayloadTooLarge
from iotsupport.errors import ServiceUnavailable
from iotsupport.notifications import ASSETS_TOPIC
from iotsupport.notifications import Publisher
from iotsupport.settings import Settings

log = logging.getLogger(__name__)

# Temp files start with a dot; names starting with a dot are refused, so no
# request can ever read or list a file that is still arriving.
TEMP_PREFIX = ".upload-"
MAX_FILENAME_BYTES = 255
_HASH_CHUNK = 1024 * 1024
_HASH_CACHE_SIZE = 4096

FolderState = t.Literal["ok", "missing", "not_writable"]
# What health and a refused upload say for a folder that is not "ok".
FOLDER_PROBLEMS: dict[str, str] = {
    "missing": "ASSETS_DIR does not exist or is not a folder",
    "not_writable": "ASSETS_DIR is not writable",
}


class MissingField(InvalidInput):
    code = "missing_field"


class UnsafeFilename(InvalidInput):
    code = "unsafe_filename"


class SignatureReplayed(Conflict):
    code = "signature_already_used"


class AssetTooLarge(PayloadTooLarge):
    code = "asset_too_large"


class AssetsNotConfigured(ServiceUnavailable):
    code = "assets_not_configured"


class AssetsFolderUnavailable(ServiceUnavailable):
    code = "assets_folder_unavailable"


def too_large(max_bytes: int) -> AssetTooLarge:
    return AssetTooLarge(
        f"the file is larger than the limit of {max_bytes} bytes", {"max_bytes": max_bytes}
    )


def _write_failed(exc: OSError) -> AssetsFolderUnavailable:
    log.error("assets folder: writing an upload failed: %s", exc)
    return AssetsFolderUnavailable("the upload could not be written to the assets folder")


def check_filename(name: str) -> str:
    """`name` when it is safe as a single file name in the assets folder; else a 400."""

    def refuse(reason: str) -> t.NoReturn:
        raise UnsafeFilename(f"unsafe filename: {reason}", {"reason": reason})

    if not name:
        refuse("it is empty")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        refuse("it is not valid UTF-8")
    if size > MAX_FILENAME_BYTES:
        refuse(f"it is longer than {MAX_FILENAME_BYTES} bytes")
    if "/" in name or "\\" in name:
        refuse("it contains a slash or backslash")
    if ".." in name:
        refuse("it contains '..'")
    if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in name):
        refuse("it contains NUL or another control character")
    if name.startswith("."):
        refuse("it starts with '.' (reserved for uploads in progress)")
    return name


@dataclass(frozen=True)
class StoredAsset:
    name: str
    size: int
    sha256: str
    uploaded_at: datetime


@dataclass(frozen=True)
class OpenedAsset:
    """An open file and the stat of that very file (not of whatever the name points to now)."""

    file: t.BinaryIO
    size: int
    modified: datetime
    etag: str


class StagedFile:
    """A temp file in the assets folder that counts and hashes what the form parser writes."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        handle, name = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX, suffix=".part")
        self.path = Path(name)
        self.max_bytes = max_bytes
        self.size = 0
        self.published = False
        self._hash = hashlib.sha256()
        self._file = os.fdopen(handle, "w+b")

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise too_large(self.max_bytes)
        self._hash.update(data)
        try:
            return self._file.write(data)
        except OSError as exc:  # e.g. the disk is full
            raise _write_failed(exc) from None

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def sync(self) -> os.stat_result:
        """Flush to disk; the stat of the file as it will appear."""
        try:
            self._file.flush()
            os.fchmod(self._file.fileno(), 0o644)  # mkstemp's 0600 would hide it from others
            os.fsync(self._file.fileno())
            return os.fstat(self._file.fileno())
        except OSError as exc:
            raise _write_failed(exc) from None

    def close(self) -> None:
        self._file.close()


class Staging:
    """The temp files of one upload request; whatever was not published is deleted."""

    def __init__(self, store: AssetStore) -> None:
        self._store = store
        self._files: list[StagedFile] = []

    def new_file(self) -> StagedFile:
        """A fresh temp file in the assets folder, deleted on exit unless published."""
        try:
            staged = StagedFile(self._store.directory, self._store.max_bytes)
        except OSError as exc:
            raise self._store.unavailable(exc) from None
        self._files.append(staged)
        return staged

    def discard(self) -> None:
        for staged in self._files:
            staged.close()
            if not staged.published:  # its name may already belong to another upload
                staged.path.unlink(missing_ok=True)
        self._files.clear()


class AssetStore:
    """The assets folder: list, open, replace atomically, delete."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        # Per process: a file's hash is computed once per version (inode, size, mtime).
        self._hashes: dict[tuple[str, int, int, int], str] = {}

    def folder_state(self) -> FolderState:
        if not self.directory.is_dir():
            return "missing"
        if not os.access(self.directory, os.W_OK | os.X_OK):
            return "not_writable"
        return "ok"

    def folder_problem(self) -> str | None:
        """Why uploads cannot be stored right now, or None."""
        return FOLDER_PROBLEMS.get(self.folder_state())

    def unavailable(self, exc: OSError | None = None) -> AssetsFolderUnavailable:
        if exc is not None:
            log.error("assets folder: %s", exc)
        return AssetsFolderUnavailable(self.folder_problem() or "the assets folder failed")

    @contextlib.contextmanager
    def staging(self) -> Iterator[Staging]:
        if self.folder_problem() is not None:
            raise self.unavailable()
        staging = Staging(self)
        try:
            yield staging
        finally:
            staging.discard()

    def publish(self, staged: StagedFile, name: str, synced: os.stat_result) -> StoredAsset:
        """Rename the synced temp file over `name`: readers see all of it or none of it."""
        staged.close()
        try:
            os.replace(staged.path, self.directory / name)
        except OSError as exc:
            raise self.unavailable(exc) from None
        staged.published = True
        self._sync_folder()
        self._hashes[_version(name, synced)] = staged.sha256
        return StoredAsset(name, synced.st_size, staged.sha256, _modified(synced))

    def list(self) -> list[StoredAsset]:
        assets = []
        with os.scandir(self._readable_folder()) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                try:
                    info = entry.stat()
                    digest = self._sha256(entry.name, info)
                except FileNotFoundError:  # deleted or replaced while we looked
                    continue
                assets.append(StoredAsset(entry.name, info.st_size, digest, _modified(info)))
        return sorted(assets, key=lambda asset: asset.name)

    def open(self, name: str) -> OpenedAsset:
        path = self._readable_folder() / check_filename(name)
        try:
            file = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no asset named {name!r}") from None
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            file.close()
            raise NotFound(f"no asset named {name!r}")
        etag = f"{info.st_ino:x}-{info.st_mtime_ns:x}-{info.st_size:x}"
        return OpenedAsset(file, info.st_size, _modified(info), etag)

    def delete(self, name: str, *, actor: str) -> None:
        path = self._readable_folder() / check_filename(name)
        try:
            if not path.is_file():
                raise FileNotFoundError
            path.unlink()
        except FileNotFoundError:
            raise NotFound(f"no asset named {name!r}") from None
        log.info("asset %r deleted by %s", name, actor)

    def _readable_folder(self) -> Path:
        if not self.directory.is_dir():
            raise self.unavailable()
        return self.directory

    def _sync_folder(self) -> None:
        # The rename itself must survive a crash, not only the file's bytes.
        try:
            handle = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(handle)
            finally:
                os.close(handle)
        except OSError as exc:  # the file is in place; only a crash right now could undo it
            log.warning("assets folder: fsync after rename failed: %s", exc)

    def _sha256(self, name: str, info: os.stat_result) -> str:
        key = _version(name, info)
        digest = self._hashes.get(key)
        if digest is None:
            digest = _hash_file(self.directory / name)
            if len(self._hashes) >= _HASH_CACHE_SIZE:
                self._hashes.clear()
            self._hashes[key] = digest
        return digest


def _version(name: str, info: os.stat_result) -> tuple[str, int, int, int]:
    return (name, info.st_ino, info.st_size, info.st_mtime_ns)


def _modified(info: os.stat_result) -> datetime:
    return datetime.fromtimestamp(info.st_mtime, UTC)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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


def build_assets(settings: Settings, registry: CollectorRegistry) -> Assets | None:
    """Load the signing key (StartupError when unusable) and set up the folder."""
    verifier = None
    if settings.signing_key_path is not None:
        public_key = load_verification_key(settings.signing_key_path)
        verifier = UploadVerifier(public_key, settings.timestamp_tolerance_seconds)
    if settings.assets_dir is None:
        return None
    store = AssetStore(settings.assets_dir, settings.asset_max_bytes)
    return Assets(store, verifier, AssetMetrics(registry))


@dataclass(frozen=True)
class Upload:
    """What a multipart upload carried; any field may be missing."""

    file: StagedFile | None
    filename: str | None
    timestamp: str | None
    signature: str | None


class AssetService:
    """Accepts a signed upload: checks in the contract's order, then one atomic replace."""

    def __init__(
        self, session: Session, store: AssetStore, verifier: UploadVerifier, publisher: Publisher
    ) -> None:
        self.session = session
        self.store = store
        self.verifier = verifier
        self.publisher = publisher

    def accept(self, upload: Upload, *, actor: str, now: datetime | None = None) -> StoredAsset:
        now = now or utcnow()
        if upload.file is None or upload.timestamp is None or upload.signature is None:
            fields = {"file": upload.file, "timestamp": upload.timestamp}
            fields["signature"] = upload.signature
            missing = [name for name, value in fields.items() if value is None]
            raise MissingField(
                f"missing form field(s): {', '.join(missing)}; send multipart/form-data with "
                "file (a file part with a filename), timestamp and signature",
                {"missing": missing},
            )
        filename = check_filename(upload.filename or "")
        signed_at = self.verifier.check_timestamp(upload.timestamp, now)
        signature = self.verifier.check_signature(upload.timestamp, upload.signature)
        synced = upload.file.sync()  # before taking the pair's row lock, which others wait on
        self._use_once(upload.timestamp, signature, signed_at, now)
        stored = self.store.publish(upload.file, filename, synced)
        payload = {"filename": filename}
        after_commit(self.session, lambda: self.publisher.publish(ASSETS_TOPIC, payload))
        log.info("asset %r stored: %d bytes, by %s", filename, stored.size, actor)
        return stored

    def _use_once(
        self, timestamp: str, signature: bytes, signed_at: datetime, now: datetime
    ) -> None:
        """Record the pair; a second use, here or on another replica, is refused with 409."""
        digest = hashlib.sha256(timestamp.encode("utf-8") + b"\0" + signature).hexdigest()
        refusal = SignatureReplayed(
            "this timestamp and signature were used already; sign a fresh timestamp"
        )
        if self.session.get(UsedUploadSignature, digest) is not None:
            raise refusal
        self.session.add(UsedUploadSignature(digest=digest, signed_at=signed_at, used_at=now))
        try:
            self.session.flush()  # waits for a concurrent insert of the same pair, then fails
        except IntegrityError:
            raise refusal from None
        # Older pairs fail the timestamp check anyway (twice the window allows for clock skew).
        horizon = now - timedelta(seconds=2 * self.verifier.tolerance_seconds)
        prune = delete(UsedUploadSignature).where(UsedUploadSignature.signed_at < horizon)
        self.session.execute(prune.execution_options(synchronize_session=False))
