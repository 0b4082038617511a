"""A release's app ELF: checked against the image, stored like release files, read back
for the decoder (parsed once per ELF and kept in memory, a few per process)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from iotsupport.assets.store import StagedFile
from iotsupport.crashes.symbols import Symbols
from iotsupport.crashes.tables import PENDING
from iotsupport.crashes.tables import CoreDump
from iotsupport.errors import AppError
from iotsupport.errors import NotFound
from iotsupport.releases.service import file_in_use
from iotsupport.releases.storage import delete_file
from iotsupport.releases.storage import store_file
from iotsupport.releases.tables import Release
from iotsupport.releases.tables import StoredFileChunk

log = logging.getLogger(__name__)


class ElfMismatch(AppError):
    status_code = 422
    code = "elf_sha256_mismatch"


class NoSymbols(NotFound):
    code = "release_has_no_elf"


def attach_elf(session: Session, release: Release, staged: StagedFile) -> int:
    """Store the ELF as the release's symbols; returns how many dumps will be decoded
    again with them."""
    if staged.sha256 != release.elf_sha256:
        raise ElfMismatch(
            "this ELF is not the one the release's image was built from: its SHA-256 differs "
            "from app_elf_sha256 in the image's esp_app_desc_t",
            {"image_elf_sha256": release.elf_sha256, "received": staged.sha256},
        )
    file = store_file(session, staged.rewound())
    release.elf_file_sha256 = file.sha256
    again = session.execute(
        update(CoreDump)
        .where(CoreDump.release_id == release.id, CoreDump.symbolized.is_(False))
        .values(state=PENDING)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(again, "rowcount", 0) or 0)


def detach_elf(session: Session, release: Release) -> None:
    sha256 = release.elf_file_sha256
    if sha256 is None:
        raise NoSymbols(f"release {release.version!r} has no app ELF")
    release.elf_file_sha256 = None
    session.flush()
    if not file_in_use(session, sha256):
        delete_file(session, sha256)


def read_stored(session: Session, sha256: str) -> bytes:
    chunks = session.scalars(
        select(StoredFileChunk.data)
        .where(StoredFileChunk.sha256 == sha256)
        .order_by(StoredFileChunk.seq)
    )
    return b"".join(bytes(chunk) for chunk in chunks)


class SymbolCache:
    """Parsed ELFs by SHA-256, the few most recently used."""

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._items: OrderedDict[str, Symbols] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: Session, sha256: str) -> Symbols:
        with self._lock:
            if sha256 in self._items:
                self._items.move_to_end(sha256)
                return self._items[sha256]
        symbols = Symbols(read_stored(session, sha256))
        with self._lock:
            self._items[sha256] = symbols
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return symbols
