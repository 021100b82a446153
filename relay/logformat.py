"""``RELAY_LOG_FORMAT=json``: one JSON object per log line, redacted like the text format.

Each line has ``ts`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, then ``job_id``,
``reply_ref``, ``account`` and ``event`` when known, and ``exc`` with the traceback of an error.

The relay's log calls read ``"submitted job=%s replyRef=%s account=%s"``: the fields come from those
``key=value`` pairs of the finished message (``job``, ``replyRef``, ``account``), and ``event`` is the
words before the first pair (``submitted``, ``handler retry``, ``callback``). A call may also pass them
outright with ``extra={"job_id": ..., "event": ...}``, which wins over the message.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from .logs import redact

FIELDS = ("job_id", "reply_ref", "account", "event")
_KEYS = {"job": "job_id", "replyRef": "reply_ref", "account": "account"}
_PAIR = re.compile(r"(?:^|(?<=\s))([A-Za-z_]+)=(\S*)")
_EVENT = re.compile(r"[\w .-]{1,40}")
_TRAILING = ",;:)"


def fields_of(message: str) -> dict[str, str]:
    """``job_id``, ``reply_ref``, ``account`` and ``event`` as a message of the relay states them."""
    found: dict[str, str] = {}
    first = None
    for match in _PAIR.finditer(message):
        first = match.start() if first is None else first
        name = _KEYS.get(match[1])
        value = match[2].rstrip(_TRAILING)
        if name and name not in found and value and value != "None":
            found[name] = value
    if first:
        event = message[:first].strip()
        if _EVENT.fullmatch(event):
            found["event"] = event
    return found


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON; message, traceback and fields pass :func:`redact`."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line."""
        message = redact(record.getMessage())
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        line.update(fields_of(message))
        for name in FIELDS:
            given = record.__dict__.get(name)
            if given is not None:
                line[name] = redact(str(given))
        if record.exc_info:
            # The redacting filter may have rendered it already (and redacted it); reuse that text.
            line["exc"] = redact(record.exc_text or self.formatException(record.exc_info))
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)
