"""Import in the browser: the files of an upload (the export zip: export.py).

An upload (multipart/form-data) carries `file` parts: `.json` files of the old layout,
or `.zip` archives of them. Every file is read and checked before the first is
imported, so a refused upload stores nothing:

- the body is at most `max_bytes`, and so is everything its files hold once unzipped
  (the sizes a zip declares are checked before anything is inflated, and inflating
  stops at them: a member that inflates to more fails its CRC check);
- at most `max_files` files, zip members included (a zip's central directory is
  measured before it is parsed, so a zip of a million empty members costs nothing);
- each file at most `max_file_bytes` (a config's limit, MAX_REQUEST_BYTES);
- names without path tricks (`..` or `.` anywhere, an absolute path, `\\`, a drive) and
  every segment a name that reads as it is (names.py).

Members in folders are imported by their own name; names starting with "." (and
folders) are left out, as `import-dir` leaves them out. Over a limit: 413, naming the
setting and its value; anything else wrong with the upload: 400.

The multipart body itself is read by import_form.py.

Then the files are imported in turns (`import_files`): a commit every
db.TURN_SECONDS, so that writers that arrive during a long import get in between.
"""

from __future__ import annotations

import struct
import typing as t
import zipfile
import zlib
from dataclasses import dataclass

from werkzeug.datastructures import FileStorage

from iotsupport.configs.files import ImportResult
from iotsupport.configs.files import import_file
from iotsupport.configs.service import ConfigService
from iotsupport.db import Turns
from iotsupport.errors import InvalidInput
from iotsupport.errors import PayloadTooLarge
from iotsupport.names import name_problem

# Central directory bytes allowed per file: a real entry takes 46 bytes plus its name and
# extra fields (about 100 for `folder/aa-bb-cc-dd-ee-ff.json` with timestamps).
DIRECTORY_BYTES_PER_FILE = 256

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
            raise _too_large(limits, "max_files", "the upload has more than {limit} files")
        if size > limits.max_file_bytes:
            raise _too_large(
                limits, "max_file_bytes", f"{name[:200]} is larger than {{limit}}", name=name
            )
        if self.bytes > limits.max_bytes:
            raise _too_large(limits, "max_bytes", "the files hold more than {limit} unzipped")


# Each limit, the setting that sets it, and how a message says its value.
_SETTINGS = {
    "max_bytes": ("IMPORT_MAX_BYTES", "{setting} ({value} bytes)"),
    "max_files": ("IMPORT_MAX_FILES", "{setting} ({value})"),
    "max_file_bytes": ("MAX_REQUEST_BYTES", "{setting} ({value} bytes)"),
}


def _too_large(limits: ImportLimits, which: str, message: str, **details: str) -> UploadTooLarge:
    """413 naming the limit that was hit: its setting and value (`{limit}` in message)."""
    numbers = {
        "max_bytes": limits.max_bytes,
        "max_files": limits.max_files,
        "max_file_bytes": limits.max_file_bytes,
    }
    setting, spelled = _SETTINGS[which]
    limit = spelled.format(setting=setting, value=numbers[which])
    return UploadTooLarge(
        message.format(limit=limit),
        {"limit": setting, "value": numbers[which], **numbers, **details},
    )


def _size_of(part: FileStorage) -> int:
    stream = part.stream
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    return size


def _safe_name(name: str) -> str:
    """The name as given, unless it tries to leave its folder or hides characters: every
    segment (file and folder names alike) must be a name that reads as it is (names.py),
    and none may be '.', '..', empty, or a drive."""
    segments = name.removesuffix("/").split("/")  # a zip's folder entry ends in "/"
    problem = next(filter(None, map(_segment_problem, segments)), None)
    if not name or any(char in _FORBIDDEN_IN_NAMES for char in name) or problem:
        shown = name[:200].encode("unicode_escape").decode("ascii")
        raise UnsafeUpload(
            f"unsafe file name {shown!r}: no '.' or '..' segments, absolute paths, '\\', "
            "drives, control or invisible characters, or spaces at either end of a name",
            {"file": shown},
        )
    return name


def _segment_problem(segment: str) -> str | None:
    if segment in ("", ".", ".."):
        return f"segment {segment!r}"
    if len(segment) > 1 and segment[1] == ":":
        return "a drive"
    return name_problem(segment)


def _members(name: str, part: FileStorage, budget: _Budget) -> list[UploadedFile]:
    stream = part.stream
    limits = budget.limits
    if _directory_size(stream, name) > limits.max_files * DIRECTORY_BYTES_PER_FILE:
        raise _too_large(
            limits, "max_files", f"{name[:200]} has more than {{limit}} files", name=name
        )
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise UnsafeUpload(f"{name[:200]} is not a zip file ({exc})"[:300]) from None
    wanted = []
    for info in archive.infolist():
        # zipfile cuts a name at NUL: the whole name as stored is the one to check.
        member = _safe_name(info.orig_filename)
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


def import_files(
    service: ConfigService, files: list[UploadedFile], model: str | None, turns: Turns | None
) -> list[ImportResult]:
    """Import each file (its own savepoint, files.import_file). With `turns`, commit now
    and then, so that a long import lets other writers in (db.Turns); a dry run stays
    one transaction, to be thrown away."""
    results = []
    for file in files:
        results.append(import_file(service, file.name, file.data, model))
        if turns is not None:
            turns.done_one()
    return results
