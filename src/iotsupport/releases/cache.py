"""A per-replica disk cache of release files, named by their SHA-256.

The database stays the source of truth: a file is copied here from the database the
first time a replica serves it, verified against its SHA-256 while it is written, and
renamed into place whole. A name is the hash of the bytes, so a cached file can never
be stale; worker processes may share the folder (each fill writes its own temp file,
the rename is atomic). When the folder grows past its limit the least recently served
files go. Any failure of the folder (full, read-only) only means the bytes come from
the database again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine

from iotsupport.releases.storage import FileInfo
from iotsupport.releases.storage import iter_file
from iotsupport.settings import Settings

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
_TEMP_PREFIX = ".fill-"
_STALE_TEMP_SECONDS = 3600  # a fill left behind by a worker that died


def build_release_cache(settings: Settings) -> FileCache | None:
    """The cache RELEASE_CACHE_DIR and RELEASE_CACHE_MAX_BYTES describe; None when off."""
    if settings.release_cache_max_bytes == 0:
        return None
    directory = settings.release_cache_dir or (
        Path(tempfile.gettempdir()) / f"iotsupport-release-cache-{os.geteuid()}"
    )
    return FileCache(directory, settings.release_cache_max_bytes)


class FileCache:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._safe: bool | None = None  # checked on first use

    def safe(self) -> bool:
        """Whether the folder is ours alone: a file others could plant there would be
        served as if it were the release (a cached file is verified once, when written)."""
        if self._safe is None:
            try:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                info = self.directory.stat()
                self._safe = info.st_uid == os.geteuid() and not info.st_mode & 0o022
            except OSError as exc:
                log.warning("release cache: %s", exc)
                self._safe = False
            if not self._safe:
                log.error(
                    "release cache off: %s must be a folder only this user can write",
                    self.directory,
                )
        return self._safe

    def iter_range(
        self, engine: Engine, file: FileInfo, start: int = 0, stop: int | None = None
    ) -> Iterator[bytes]:
        """Like storage.iter_file, from the cached copy (made first when missing)."""
        stop = file.size if stop is None else stop
        path = self._cached(engine, file)
        if path is None:
            yield from iter_file(engine, file, start, stop)
            return
        with path.open("rb") as cached:
            cached.seek(start)
            left = stop - start
            while left > 0:
                piece = cached.read(min(READ_SIZE, left))
                if not piece:  # cut short under us; the database has the rest
                    yield from iter_file(engine, file, stop - left, stop)
                    return
                left -= len(piece)
                yield piece

    def _cached(self, engine: Engine, file: FileInfo) -> Path | None:
        if file.size > self.max_bytes or not self.safe():
            return None
        path = self.directory / file.sha256
        try:
            if path.stat().st_size == file.size:
                os.utime(path)  # recently served: evicted last
                return path
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("release cache: %s", exc)
            return None
        try:
            self._fill(engine, file, path)
            self._evict(keep=path)
        except OSError as exc:
            log.warning("release cache: filling %s failed: %s", file.sha256, exc)
            return None
        return path

    def _fill(self, engine: Engine, file: FileInfo, path: Path) -> None:
        handle, name = tempfile.mkstemp(dir=self.directory, prefix=_TEMP_PREFIX)
        try:
            digest = hashlib.sha256()
            with os.fdopen(handle, "wb") as temp:
                for piece in iter_file(engine, file):
                    digest.update(piece)
                    temp.write(piece)
            if digest.hexdigest() != file.sha256:
                raise OSError(f"the database's bytes do not hash to {file.sha256}")
            os.replace(name, path)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise

    def _evict(self, keep: Path) -> None:
        """Remove the least recently served files until the folder fits its limit."""
        entries = []
        now = time.time()
        for entry in os.scandir(self.directory):
            try:
                if not entry.is_file():
                    continue
                info = entry.stat()
            except FileNotFoundError:  # another worker removed it just now
                continue
            if not entry.name.startswith(_TEMP_PREFIX):
                entries.append((info.st_mtime, info.st_size, entry.path))
            elif info.st_mtime < now - _STALE_TEMP_SECONDS:
                Path(entry.path).unlink(missing_ok=True)
        total = sum(size for _, size, _ in entries)
        for _, size, name in sorted(entries):
            if total <= self.max_bytes:
                break
            if name != str(keep):
                Path(name).unlink(missing_ok=True)
                total -= size
