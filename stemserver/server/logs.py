"""The server's log: what clients send (paths, ids, instruments) goes into log lines, so control
characters are escaped there; a path holding a newline must not forge a line of its own."""

from __future__ import annotations

import logging
import re
import sys

FORMAT = "%(asctime)s %(levelname)s %(message)s"
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_control(text: str) -> str:
    """`text` with each control character written as Python writes it in a literal (\\n, \\x1b, \\u2028)."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


class EscapeControl(logging.Filter):
    """Formats a record's message and escapes it (a traceback after it keeps its lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = escape_control(record.getMessage()), None
        return True


def configure(logger: logging.Logger) -> None:
    """Log to stderr (unless the application already configured logging) with `logger`'s messages escaped."""
    logging.basicConfig(level=logging.INFO, format=FORMAT, stream=sys.stderr)
    if not any(isinstance(f, EscapeControl) for f in logger.filters):
        logger.addFilter(EscapeControl())
