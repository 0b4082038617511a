"""Import and export in the browser: the files of an upload, and the export zip.

An upload (multipart/form-data) carries `file` parts: `.json` files of the old layout,
or `.zip` archives of them. Every file is read and checked before the first is
imported, so a refused upload stores nothing:

- the body is at most `max_bytes`, and so is everything its files hold once unzipped
  (the sizes a zip declares are checked before anything is inflated, and inflating
  stops at them: a member that inflates to more fails its CRC check);
- at most `max_files` files, zip members included (a zip's central directory is
  measured before it is parsed, so a zip of a million empty members costs nothing);
- each file at most `max_file_bytes` (a config's limit, MAX_REQUEST_BYTES);
- names without path tricks (`..`, an absolute path, `\\`, a drive, control characters).

Members in folders are imported by their own name; names starting with "." (and
folders) are left out, as `import-dir` leaves them out. Over a limit: 413; anything
else wrong with the upload: 400.
"""

from __future__ import annotations

import struct
import typing as t
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from werkzeug.datastructures import FileStorage
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from iotsupport.configs.files import file_name
from iotsupport.configs.tables import DeviceConfig
from iotsupport.db import Database
from iotsupport.errors import InvalidInput
from iotsupport.errors import PayloadTooLarge

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024
# Central directory bytes allowed per file: a real entry takes 46 bytes plus its name and
# extra fields (about 100 for `folder/aa-bb-cc-dd-ee-ff.json` with timestamps).
DIRECTORY_BYTES_PER_FILE = 256
EXPORT_BATCH = 500

_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_FORBIDDEN_IN_NAMES = {chr(code) for code in range(32)} | {"\x7f", "\\"}


class UnsafeUpload(InvalidInput):
    code = "invalid_upload"


class UploadTooLarge(PayloadTooLarge):
    code = "upload_too_large"


@dataclass(frozen=True)
class ImportLimits:
    max_bytes: int
    max_files: int
    max_file_bytes: int


@dataclass(frozen=True)
class UploadedFile:
    name: str  # as reported: the part's file name, or "archive.zip/member/path.json"
    data: bytes


@dataclass(frozen=True)
class ImportForm:
    """The parts of an upload; `with` closes the files (spooled to disk when large)."""

    fields: MultiDict[str, str]
    files: list[FileStorage]

    def __enter__(self) -> ImportForm:
        return self

    def __exit__(self, *_: object) -> None:
        for part in self.files:
            part.close()


def read_form(environ: dict[str, t.Any], limits: ImportLimits) -> ImportForm:
    """The multipart body: its text fields and `file` parts (spooled to disk when large)."""
    parser = FormDataParser(
        max_form_memory_size=MAX_FIELD_BYTES,
        max_content_length=limits.max_bytes,
        max_form_parts=limits.max_files + 16,
        silent=False,
    )
    content_type = environ.get("CONTENT_TYPE", "")
    if not content_type.startswith("multipart/form-data"):
        raise UnsafeUpload("send the files as multipart/form-data, in parts named file")
    try:
        _, fields, files = parser.parse_from_environ(environ)
    except RequestEntityTooLarge:
        raise _too_large(limits, "the upload is larger than {max_bytes} bytes") from None
    except ValueError:
        raise UnsafeUpload("the multipart body is malformed or incomplete") from None
    unknown = sorted(set(files) - {FILE_FIELD})
    if unknown:
        for _, part in files.items(multi=True):
            part.close()
        raise UnsafeUpload(f"unknown file part {unknown[0][:64]!r}; name each part file")
    if not files:
        raise UnsafeUpload("no file part: send one or more parts named file")
    return ImportForm(fields, files.getlist(FILE_FIELD))


def uploaded_files(parts: list[FileStorage], limits: ImportLimits) -> list[UploadedFile]:
    """Every file of the upload, read and checked whole (see the module) before any is
    imported."""
    budget = _Budget(limits)
    found: list[UploadedFile] = []
    for part in parts:
        name = _safe_name(part.filename or "")
        if name.rsplit("/", 1)[-1].lower().endswith(".zip"):
            found += _members(name, part, budget)
        else:
            budget.count(name, _size_of(part))
            found.append(UploadedFile(name, part.stream.read(limits.max_file_bytes + 1)))
    return found


class _Budget:
    """Files and bytes left within the limits."""

    def __init__(self, limits: ImportLimits) -> None:
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def count(self, name: str, size: int) -> None:
        limits = self.limits
        self.files += 1
        self.bytes += size
        if self.files > limits.max_files:
            raise _too_large(limits, "the upload has more than {max_files} files")
        if size > limits.max_file_bytes:
            raise _too_large(
                limits, f"{name[:200]} is larger than {{max_file_bytes}} bytes", name=name
            )
        if self.bytes > limits.max_bytes:
            raise _too_large(limits, "the files hold more than {max_bytes} bytes unzipped")


def _too_large(limits: ImportLimits, message: str, **details: str) -> UploadTooLarge:
    numbers = {
        "max_bytes": limits.max_bytes,
        "max_files": limits.max_files,
        "max_file_bytes": limits.max_file_bytes,
    }
    return UploadTooLarge(message.format(**numbers), {**numbers, **details})


def _size_of(part: FileStorage) -> int:
    stream = part.stream
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    return size


def _safe_name(name: str) -> str:
    """The name as given, unless it tries to leave its folder or hides characters."""
    segments = name.split("/")
    if (
        not name
        or name.startswith("/")
        or any(char in _FORBIDDEN_IN_NAMES for char in name)
        or ".." in segments
        or (len(name) > 1 and name[1] == ":")
    ):
        raise UnsafeUpload(
            f"unsafe file name {name[:200]!r}: no '..', absolute paths, '\\', drives or "
            "control characters",
            {"file": name[:200]},
        )
    return name


def _members(name: str, part: FileStorage, budget: _Budget) -> list[UploadedFile]:
    stream = part.stream
    limits = budget.limits
    if _directory_size(stream, name) > limits.max_files * DIRECTORY_BYTES_PER_FILE:
        raise _too_large(limits, f"{name[:200]} has more than {{max_files}} files", name=name)
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise UnsafeUpload(f"{name[:200]} is not a zip file ({exc})"[:300]) from None
    wanted = []
    for info in archive.infolist():
        member = _safe_name(info.filename)
        if info.is_dir() or member.rsplit("/", 1)[-1].startswith("."):
            continue
        budget.count(f"{name}/{member}", info.file_size)
        wanted.append(info)
    found = []
    for info in wanted:
        label = f"{name}/{info.filename}"
        try:
            with archive.open(info) as inflating:
                data = inflating.read(limits.max_file_bytes + 1)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, zlib.error, EOFError):
            # A bad CRC (it inflates to more than it declared), encrypted, unknown method.
            raise UnsafeUpload(
                f"{label[:200]} cannot be read from the zip (damaged, encrypted, or "
                "compressed in a way this server does not read)",
                {"file": label[:200]},
            ) from None
        found.append(UploadedFile(label, data))
    return found


def _directory_size(stream: t.IO[bytes], name: str) -> int:
    """The size of a zip's central directory, from its end record (zip64 too)."""
    stream.seek(0, 2)
    size = stream.tell()
    start = max(0, size - (_EOCD.size + 0xFFFF))
    stream.seek(start)
    tail = stream.read()
    stream.seek(0)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise UnsafeUpload(f"{name[:200]} is not a zip file (no end of central directory)")
    *_, entries, directory, _offset, _comment = _EOCD.unpack_from(tail, at)
    if entries != 0xFFFF and directory != 0xFFFFFFFF:
        return int(directory)
    locator = start + at - _ZIP64_LOCATOR.size
    stream.seek(max(0, locator))
    signature, _disk, record, _disks = _ZIP64_LOCATOR.unpack(stream.read(_ZIP64_LOCATOR.size))
    stream.seek(record)
    raw = stream.read(_ZIP64_EOCD.size)
    stream.seek(0)
    if signature != b"PK\x06\x07" or len(raw) < _ZIP64_EOCD.size or raw[:4] != b"PK\x06\x06":
        raise UnsafeUpload(f"{name[:200]} is not a zip file (broken zip64 end record)")
    return int(_ZIP64_EOCD.unpack(raw)[8])


# --- export ---------------------------------------------------------------------------


class _Spool:
    """Where the zip writer writes; the bytes are handed on as they come (a zip written
    to a stream that cannot seek carries its sizes in each entry's header)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def export_archive(
    database: Database, model_id: int | t.Literal["none"] | None = None
) -> Iterator[bytes]:
    """A zip of `aa-bb-cc-dd-ee-ff.json` files (every config, or a model's), each the
    content exactly as saved, made as it is sent: EXPORT_BATCH configs at a time are
    read (each batch in its own read), so a worker never holds the whole fleet."""
    spool = _Spool()
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for rows in _batches(database, model_id):
            for mac, content, updated_at in rows:
                info = zipfile.ZipInfo(file_name(mac), date_time=_zip_time(updated_at))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, content.encode("utf-8"))
            yield spool.take()
    yield spool.take()


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    """UTC, as zip has no time zone; zip cannot say a year before 1980."""
    at = moment.utctimetuple()
    return (max(1980, at.tm_year), at.tm_mon, at.tm_mday, at.tm_hour, at.tm_min, at.tm_sec)


def _batches(database: Database, model_id: int | t.Literal["none"] | None) -> Iterator[list[t.Any]]:
    columns = DeviceConfig.__table__.c
    last = ""
    while True:
        query = (
            select(columns.mac_address, columns.content, DeviceConfig.updated_at)
            .where(columns.mac_address > last)
            .order_by(columns.mac_address)
            .limit(EXPORT_BATCH)
        )
        if model_id == "none":  # the list's "no model"
            query = query.where(columns.model_id.is_(None))
        elif model_id is not None:
            query = query.where(columns.model_id == model_id)
        with database.session(read_only=True) as session:
            rows = list(session.execute(query))
        if not rows:
            return
        yield rows
        last = rows[-1].mac_address
