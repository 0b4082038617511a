"""The assets folder devices download from: list, open, replace atomically, delete.

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
from pathlib import Path

from iotsupport.assets.names import check_filename
from iotsupport.errors import NotFound
from iotsupport.errors import PayloadTooLarge
from iotsupport.errors import ServiceUnavailable
from iotsupport.staging import ASSETS_AREA
from iotsupport.staging import own_folder

log = logging.getLogger(__name__)

# Temp files start with a dot; names starting with a dot are refused, so no
# request can ever read or list a file that is still arriving.
TEMP_PREFIX = ".upload-"
_HASH_CHUNK = 1024 * 1024
_HASH_CACHE_SIZE = 4096

FolderState = t.Literal["ok", "missing", "not_writable"]
# What health and a refused upload say for a folder that is not "ok".
FOLDER_PROBLEMS: dict[str, str] = {
    "missing": "ASSETS_DIR does not exist or is not a folder",
    "not_writable": "ASSETS_DIR is not writable",
}


class AssetTooLarge(PayloadTooLarge):
    code = "asset_too_large"


class AssetsFolderUnavailable(ServiceUnavailable):
    code = "assets_folder_unavailable"


def too_large(max_bytes: int) -> AssetTooLarge:
    return AssetTooLarge(
        f"the file is larger than the limit of {max_bytes} bytes", {"max_bytes": max_bytes}
    )


def _write_failed(exc: OSError) -> AssetsFolderUnavailable:
    log.error("assets folder: writing an upload failed: %s", exc)
    return AssetsFolderUnavailable("the upload could not be written to the assets folder")


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

    def rewound(self) -> t.BinaryIO:
        """The file itself, flushed and at its start, for reading what arrived."""
        self._file.flush()
        self._file.seek(0)
        return self._file

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
    """The temp files of one upload request; whatever was not published is deleted.

    Uploads to the assets folder are staged in its `.staging` folder (then renamed into
    place); release uploads in STAGING_DIR (their bytes go to the database).
    """

    def __init__(
        self, directory: Path, max_bytes: int, unavailable: t.Callable[[OSError], Exception]
    ) -> None:
        self._directory = directory
        self._max_bytes = max_bytes
        self._unavailable = unavailable
        self._files: list[StagedFile] = []

    def new_file(self) -> StagedFile:
        """A fresh temp file in the folder, deleted on exit unless published."""
        try:
            staged = StagedFile(self._directory, self._max_bytes)
        except OSError as exc:
            raise self._unavailable(exc) from None
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
        try:
            # This process's own staging folder in the assets folder (cleaned at start of
            # what a killed process left, iotsupport/staging.py); renamed into place.
            folder = own_folder(self.directory / ASSETS_AREA)
        except OSError as exc:
            raise self.unavailable(exc) from None
        staging = Staging(folder, self.max_bytes, self.unavailable)
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
