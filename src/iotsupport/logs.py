"""Process-wide logging: plain lines on stderr, our loggers only.

Every line is escaped in one place, the formatter: a value from a request (a
token's `kid`, a path, a header) that holds a line break or another control or
bidirectional character cannot start a forged line or hide part of one. A
traceback keeps its own lines.
"""

from __future__ import annotations

import logging
import re
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s pid=%(process)d %(message)s"
# C0 and C1 controls, DEL, line and paragraph separators, bidirectional controls.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` on one line, with every unsafe character written as an escape."""
    return _UNSAFE.sub(_escaped, text)


class SafeFormatter(logging.Formatter):
    """The standard formatter, with the message line escaped (tracebacks stay as they are)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(FORMAT))
    for name in ("iotsupport", "sqlalchemy.pool"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
    logging.getLogger("iotsupport").setLevel(level.upper())
