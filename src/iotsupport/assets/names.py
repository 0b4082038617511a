"""Which names an asset may have: one safe file name in the assets folder, that reads as it is.

Refused: empty, over 255 bytes of UTF-8, `/` or `\\`, `..`, a leading `.` (kept for
uploads in progress), and every character that is invisible or changes how the
rest displays: control characters, format characters such as the bidirectional
overrides (`fw\\u202e.nib.exe` shows as `fwexe.bin`), zero-width and other
default-ignorable characters, separators other than the plain space, private-use,
unassigned and surrogate code points.
"""

from __future__ import annotations

import typing as t

from iotsupport.errors import InvalidInput
from iotsupport.names import name_problem

MAX_FILENAME_BYTES = 255

# The same rule as a JSON Schema pattern, for the OpenAPI document (it cannot count
# bytes, nor name unassigned code points or characters above the Basic Multilingual
# Plane: the server's check is the authority).
FILENAME_PATTERN = (
    r"^(?!\.)(?!.*\.\.)[^/\\\x00-\x1f\x7f-\xa0\xad\u034f\u061c\u115f\u1160\u1680\u17b4"
    r"\u17b5\u180b-\u180f\u2000-\u200f\u2028-\u202f\u205f-\u206f\u2800\u3000\u3164"
    r"\ud800-\uf8ff\ufe00-\ufe0f\ufeff\ufff0-\ufffb\uffa0]{1,255}$"
)
FILENAME_DESCRIPTION = (
    "A file name: at most 255 bytes of UTF-8, no '/', '\\' or '..', not starting with "
    "'.', no control, format (bidirectional, zero-width), private-use or unassigned "
    "characters and no space other than U+0020."
)


class UnsafeFilename(InvalidInput):
    code = "unsafe_filename"


def check_filename(name: str) -> str:
    """`name` when it is safe as a single file name in the assets folder; else a 400."""

    def refuse(reason: str) -> t.NoReturn:
        raise UnsafeFilename(f"unsafe filename: {reason}", {"reason": reason})

    if not name:
        refuse("it is empty")
    if any(0xD800 <= ord(char) <= 0xDFFF for char in name):
        refuse("it is not valid UTF-8")
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        refuse(f"it is longer than {MAX_FILENAME_BYTES} bytes")
    if "/" in name or "\\" in name:
        refuse("it contains a slash or backslash")
    if ".." in name:
        refuse("it contains '..'")
    if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in name):
        refuse("it contains NUL or another control character")
    if name.startswith("."):
        refuse("it starts with '.' (reserved for uploads in progress)")
    problem = name_problem(name)  # the rule for every name a person sees
    if problem is not None:
        refuse(problem)
    return name
