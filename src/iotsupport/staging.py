"""Where uploads are staged while they arrive: folders the server owns, cleaned of what
dead processes left behind (a kill -9 in the middle of an upload runs no cleanup).

Each process stages in its own subfolder `<pid>-<random>` of a staging area and holds
an exclusive lock (flock) on the subfolder's `.owner` file for as long as it lives.
The kernel drops that lock when the process dies, however it dies, so a subfolder
whose lock can be taken belongs to nobody: `sweep` removes it. Every process sweeps
when it starts (a restart, a respawned worker) and when it first stages.

Areas: STAGING_DIR (default `<system temp>/iotsupport-staging-<uid>`, mode 0700) for
release uploads and the import's spooled files; `ASSETS_DIR/.staging` for asset
uploads, which are renamed into place (same file system).
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path

from iotsupport.errors import StartupError
from iotsupport.settings import Settings

log = logging.getLogger(__name__)

OWNER_FILE = ".owner"
ASSETS_AREA = ".staging"  # in ASSETS_DIR
# Staging files of earlier versions, which staged in the temp folder itself (releases)
# and in ASSETS_DIR (assets): removed once nothing has written them for this long.
LEGACY_PATTERN = ".upload-*.part"
LEGACY_STALE_SECONDS = 3600
# A subfolder with no owner file yet is being made; one older than this never was.
_UNCLAIMED_STALE_SECONDS = 60

_lock = threading.Lock()
# Per area: (pid, this process's subfolder, the open owner file holding the flock).
_claimed: dict[Path, tuple[int, Path, int]] = {}


def area_of(settings: Settings) -> Path:
    """STAGING_DIR, or its default in the system's temp folder."""
    default = Path(tempfile.gettempdir()) / f"iotsupport-staging-{os.geteuid()}"
    return settings.staging_dir or default


def sweep_at_start(settings: Settings) -> None:
    """What stopped processes left: in STAGING_DIR, in ASSETS_DIR, and the staging files
    of earlier versions in the system's temp folder. Refuses an unsafe STAGING_DIR."""
    area = area_of(settings)
    check_area(area)
    sweep(area)
    sweep_legacy(Path(tempfile.gettempdir()))
    if settings.assets_dir is not None:
        try:
            sweep(settings.assets_dir / ASSETS_AREA)
            sweep_legacy(settings.assets_dir)
        except OSError as exc:  # the assets folder reports its own problems (health)
            log.warning("staging: could not clean the assets folder: %s", exc.strerror)


def check_area(area: Path, setting: str = "STAGING_DIR") -> None:
    """Make the area if missing; refuse one that others could write to (they could
    swap a staged file), or that is a link."""
    try:
        area.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = area.lstat()
    except OSError as exc:
        raise StartupError(f"{setting} {area}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise StartupError(
            f"{setting} {area} must be a folder of this user that no one else can write to"
        )


def own_folder(area: Path) -> Path:
    """This process's subfolder of the area, made (and the area swept) on first use."""
    pid = os.getpid()
    with _lock:
        claimed = _claimed.get(area)
        if claimed is not None and claimed[0] == pid and claimed[1].is_dir():
            return claimed[1]
        if claimed is not None:  # inherited across a fork, or removed (a temp cleaner)
            os.close(claimed[2])
            del _claimed[area]
        area.mkdir(mode=0o700, parents=True, exist_ok=True)
        sweep(area)
        folder = area / f"{pid}-{secrets.token_hex(4)}"
        folder.mkdir(mode=0o700)
        handle = os.open(folder / OWNER_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _claimed[area] = (pid, folder, handle)
        return folder


def sweep(area: Path) -> int:
    """Remove the subfolders of processes that are gone (and old legacy staging files);
    how many were removed."""
    removed = 0
    try:
        entries = list(os.scandir(area))
    except FileNotFoundError:
        return 0
    mine = _claimed.get(area)
    for entry in entries:
        path = Path(entry.path)
        if mine is not None and mine[0] == os.getpid() and path == mine[1]:
            continue
        try:
            if entry.is_dir(follow_symlinks=False) and _abandoned(path):
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        except OSError as exc:
            log.warning("staging: could not check %s: %s", path.name, exc.strerror)
    removed += sweep_legacy(area)
    if removed:
        log.info("staging: removed %d staging folder(s) left by stopped processes", removed)
    return removed


def sweep_legacy(folder: Path) -> int:
    """Staging files that earlier versions left in `folder`, untouched for an hour."""
    removed = 0
    cutoff = time.time() - LEGACY_STALE_SECONDS
    for path in folder.glob(LEGACY_PATTERN):
        try:
            info = path.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid():
                if info.st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        except OSError:
            continue
    return removed


def _abandoned(folder: Path) -> bool:
    try:
        handle = os.open(folder / OWNER_FILE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return time.time() - folder.lstat().st_mtime > _UNCLAIMED_STALE_SECONDS
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its process holds it: alive
    finally:
        os.close(handle)  # closing drops a lock taken here
    return True
