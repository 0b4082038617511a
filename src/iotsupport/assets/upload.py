"""Reading a multipart upload as it arrives: the fields first, then the file into the folder.

When the file part begins, `on_file` sees the fields sent so far and the file's
name, before a single byte of the file is read: a refusal there ends the
request at once, and the rest of the body is never read. The file is streamed
into a temp file in the assets folder (counted and hashed as it is written),
never held in memory.
"""

from __future__ import annotations

import typing as t
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data
from werkzeug.sansio.multipart import Epilogue
from werkzeug.sansio.multipart import Field
from werkzeug.sansio.multipart import File
from werkzeug.sansio.multipart import MultipartDecoder
from werkzeug.sansio.multipart import NeedData
from werkzeug.sansio.multipart import State
from werkzeug.wsgi import get_input_stream

from iotsupport.assets.store import StagedFile
from iotsupport.assets.store import Staging
from iotsupport.assets.store import too_large
from iotsupport.errors import InvalidInput

FILE_FIELD = "file"
# Room for the boundaries, part headers and the text fields around the file.
FORM_OVERHEAD_BYTES = 64 * 1024
# Caps each text field (and the decoder's buffer, so reads stay below it).
MAX_FIELD_BYTES = 64 * 1024
MAX_FORM_PARTS = 16
_CHUNK_BYTES = 32 * 1024


class InvalidMultipart(InvalidInput):
    code = "invalid_multipart"


@dataclass
class Upload:
    """What a multipart upload carried; any part may be missing."""

    fields: dict[str, str] = field(default_factory=dict)
    file: StagedFile | None = None
    filename: str | None = None
    fields_before_file: frozenset[str] = frozenset()  # the fields `on_file` saw


OnFile = Callable[[Mapping[str, str], str], None]


def read_upload(
    environ: dict[str, t.Any], staging: Staging, max_file_bytes: int, on_file: OnFile
) -> Upload:
    """Parse the multipart/form-data body of `environ`, the first `file` part to disk.

    Not multipart at all: an empty Upload (every field missing). The body may be
    at most `max_file_bytes` plus FORM_OVERHEAD_BYTES, chunked or not; the file
    itself at most `max_file_bytes` (413 either way).
    """
    mimetype, options = parse_options_header(environ.get("CONTENT_TYPE", ""))
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary:
        return Upload()
    limit = max_file_bytes + FORM_OVERHEAD_BYTES
    try:
        # One byte over the limit is read, so a chunked body is refused, not cut short.
        stream = get_input_stream(environ, max_content_length=limit + 1)
    except RequestEntityTooLarge:
        raise too_large(max_file_bytes) from None
    decoder = MultipartDecoder(
        boundary.encode("latin-1"), max_form_memory_size=MAX_FIELD_BYTES, max_parts=MAX_FORM_PARTS
    )
    reader = _Reader(staging, on_file)
    received = 0
    try:
        while decoder.state not in (State.EPILOGUE, State.COMPLETE):
            chunk = stream.read(_CHUNK_BYTES)
            received += len(chunk)
            if received > limit:
                raise too_large(max_file_bytes)
            decoder.receive_data(chunk or None)
            event = decoder.next_event()
            while not isinstance(event, NeedData | Epilogue):
                reader.handle(event)
                event = decoder.next_event()
    except RequestEntityTooLarge:
        raise InvalidMultipart(
            f"the form has more than {MAX_FORM_PARTS} parts or a field over {MAX_FIELD_BYTES} bytes"
        ) from None
    except ValueError:  # werkzeug: a broken or truncated multipart body
        raise InvalidMultipart("the multipart body is malformed or incomplete") from None
    return reader.upload


class _Reader:
    def __init__(self, staging: Staging, on_file: OnFile) -> None:
        self.staging = staging
        self.on_file = on_file
        self.upload = Upload()
        self._part: Field | File | None = None
        self._text: list[bytes] = []
        self._sink: StagedFile | None = None  # where the current part's data goes

    def handle(self, event: object) -> None:
        if isinstance(event, Field):
            self._part, self._text, self._sink = event, [], None
        elif isinstance(event, File):
            self._part, self._sink = event, None
            if event.name == FILE_FIELD and self.upload.file is None:
                self.on_file(self.upload.fields, event.filename)
                self.upload.fields_before_file = frozenset(self.upload.fields)
                self._sink = self.upload.file = self.staging.new_file()
                self.upload.filename = event.filename
        elif isinstance(event, Data):
            self._data(event)

    def _data(self, event: Data) -> None:
        if self._sink is not None:
            self._sink.write(event.data)
        elif isinstance(self._part, Field):
            self._text.append(event.data)
            if sum(map(len, self._text)) > MAX_FIELD_BYTES:
                raise RequestEntityTooLarge()
            if not event.more_data:
                value = b"".join(self._text).decode("utf-8", "replace")
                self.upload.fields.setdefault(self._part.name, value)
