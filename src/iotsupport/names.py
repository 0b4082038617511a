"""The one rule for every name a person sees, and how such a name leaves in a header.

A name (a model's code and name, a release version, an asset's name, a file or folder
name in an import, ...) must read as what it is: no control characters (C0, DEL, C1,
NUL), no format characters (the bidirectional overrides and isolates, which reorder
what follows, zero-width spaces and joiners), no other invisible (default-ignorable)
code points, no line or paragraph separators, no space other than U+0020, no
private-use, unassigned or surrogate code points, and no space at either end.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

from iotsupport.errors import InvalidInput

# Unicode general categories refused outright (Zs: every space but U+0020).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})
# Default-ignorable (invisible) code points whose category is a letter or a mark,
# plus the blank Braille pattern, which renders as nothing.
_INVISIBLE = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F]
    + [0x2800, 0x3164, 0xFFA0]
    + list(range(0xFE00, 0xFE10))
    + list(range(0xE0100, 0xE01F0))
)


class InvalidName(InvalidInput):
    code = "invalid_name"


def hidden(char: str) -> bool:
    """Whether `char` is invisible, controls or changes how the text around it displays."""
    if char == " ":
        return False
    return unicodedata.category(char) in _REFUSED_CATEGORIES or ord(char) in _INVISIBLE


def name_problem(name: str) -> str | None:
    """Why `name` cannot be shown as it is, or None when it can."""
    if not name:
        return "it is empty"
    if "\x00" in name:
        return "it contains a NUL character"
    if any(0xD800 <= ord(char) <= 0xDFFF for char in name):
        return "it is not valid UTF-8"
    if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in name):
        return "it contains a control character"
    invisible = next((char for char in name if hidden(char)), None)
    if invisible is not None:
        return f"it contains the invisible or format character U+{ord(invisible):04X}"
    if name != name.strip():
        return "it starts or ends with a space"
    return None


def check_name(name: str, field: str) -> str:
    """`name` when a person can read it as it is; else a 400 naming the field."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidName(f"{field} cannot be used as a name: {problem}", {"field": field})
    return name


def checked_name(value: str) -> str:
    """`name_problem` as a Pydantic validator (AfterValidator)."""
    problem = name_problem(value)
    if problem is not None:
        raise ValueError(f"not a name a person can read as it is: {problem}")
    return value


def attachment(filename: str) -> str:
    """A Content-Disposition that offers `filename` safely (RFC 6266): an ASCII
    `filename` with every other character as "_", and the exact name UTF-8 encoded in
    `filename*` (percent-encoded, so no quote, control character or line break in the
    name can end the header or the parameter)."""
    fallback = "".join(
        char if 32 <= ord(char) < 127 and char not in '"\\%' else "_" for char in filename
    )
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    encoded = quote(filename.encode("utf-8", errors="replace"), safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
