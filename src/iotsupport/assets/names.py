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
import unicodedata

from iotsupport.errors import InvalidInput

MAX_FILENAME_BYTES = 255
# Unicode general categories refused outright.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})
# Default-ignorable (invisible) code points whose category is a letter or a mark,
# plus the blank Braille pattern, which renders as nothing.
_INVISIBLE = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F]
    + [0x2800, 0x3164, 0xFFA0]
    + list(range(0xFE00, 0xFE10))
    + list(range(0xE0100, 0xE01F0))
)

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


def _hidden(char: str) -> bool:
    if char == " ":
        return False
    return unicodedata.category(char) in _REFUSED_CATEGORIES or ord(char) in _INVISIBLE


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
    hidden = next((char for char in name if _hidden(char)), None)
    if hidden is not None:
        refuse(f"it contains the invisible or format character U+{ord(hidden):04X}")
    if name.startswith("."):
        refuse("it starts with '.' (reserved for uploads in progress)")
    return name
