"""The multipart body of an import (POST /api/configs/import): its text fields and its
`file` parts, whatever their size up to the limits (transfer.py checks the files).

The parser reads READ_BYTES at a time and keeps a file part in memory up to
SPOOL_BYTES, in an unnamed temp file in the process's staging folder beyond; only the
text fields are held to MAX_FIELD_BYTES (werkzeug's form-memory limit, which also
bounds what its decoder buffers: that is why it reads well below it).
"""

from __future__ import annotations

import tempfile
import typing as t
from dataclasses import dataclass
from pathlib import Path

from werkzeug.datastructures import FileStorage
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import MultiPartParser
from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_content_length
from werkzeug.wsgi import get_input_stream

from iotsupport.configs.transfer import ImportLimits
from iotsupport.configs.transfer import UnsafeUpload
from iotsupport.configs.transfer import UploadTooLarge
from iotsupport.configs.transfer import _too_large

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024
MAX_TEXT_FIELDS = 16
# What the multipart parser reads at once: well below MAX_FIELD_BYTES (see read_form).
READ_BYTES = 16 * 1024
# A file part up to this size stays in memory; a larger one is spooled to disk.
SPOOL_BYTES = 64 * 1024


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


def read_form(
    environ: dict[str, t.Any], limits: ImportLimits, staging: Path | None = None
) -> ImportForm:
    """The multipart body: its text fields and `file` parts (a part over
    SPOOL_BYTES goes to a temp file in `staging`)."""
    content_type = environ.get("CONTENT_TYPE", "")
    if not content_type.startswith("multipart/form-data"):
        raise UnsafeUpload("send the files as multipart/form-data, in parts named file")
    _, options = parse_options_header(content_type)
    boundary = options.get("boundary", "").encode("latin-1", "replace")
    if not boundary:
        raise UnsafeUpload("the multipart body is malformed or incomplete (no boundary)")
    try:
        stream = _Body(get_input_stream(environ, max_content_length=limits.max_bytes), limits)
    except RequestEntityTooLarge:
        raise _too_large(limits, "max_bytes", "the upload is larger than {limit}") from None
    spooled: list[t.IO[bytes]] = []  # closed here when the parse fails
    folder = None if staging is None else str(staging)

    def spool(*_: object, **__: object) -> t.IO[bytes]:
        if len(spooled) >= limits.max_files:
            raise _too_large(limits, "max_files", "the upload has more than {limit} files")
        spooled.append(tempfile.SpooledTemporaryFile(SPOOL_BYTES, dir=folder))
        return spooled[-1]

    parser = MultiPartParser(
        stream_factory=spool,
        max_form_memory_size=MAX_FIELD_BYTES,
        max_form_parts=limits.max_files + MAX_TEXT_FIELDS,
        # The decoder refuses a buffer over MAX_FIELD_BYTES, file parts included: what it
        # reads at once must stay well below that.
        buffer_size=READ_BYTES,
    )
    try:
        fields, files = _parse(parser, stream, boundary, environ, spooled)
    except RequestEntityTooLarge:
        raise UploadTooLarge(
            f"the form has more than {limits.max_files + MAX_TEXT_FIELDS} parts, or a part "
            f"head or text field larger than {MAX_FIELD_BYTES} bytes",
            {"max_parts": limits.max_files + MAX_TEXT_FIELDS, "max_field_bytes": MAX_FIELD_BYTES},
        ) from None
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


def _parse(
    parser: MultiPartParser,
    stream: _Body,
    boundary: bytes,
    environ: dict[str, t.Any],
    spooled: list[t.IO[bytes]],
) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
    try:
        return parser.parse(t.cast(t.IO[bytes], stream), boundary, get_content_length(environ))
    except BaseException:
        for part in spooled:
            part.close()
        raise


class _Body:
    """The request body, refused as over IMPORT_MAX_BYTES when it turns out to be (a
    chunked body has no length to check first)."""

    def __init__(self, stream: t.IO[bytes], limits: ImportLimits) -> None:
        self.stream = stream
        self.limits = limits

    def read(self, size: int = -1) -> bytes:
        try:
            return self.stream.read(size)
        except RequestEntityTooLarge:
            raise _too_large(
                self.limits, "max_bytes", "the upload is larger than {limit}"
            ) from None
