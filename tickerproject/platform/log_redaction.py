"""A logging filter that masks credentials wherever they appear in a log line."""

from __future__ import annotations

import logging
import re

# access_token=..., api_secret: ..., "request_token": "...", Authorization: token key:secret
_PATTERNS = [
    re.compile(
        r"(?i)((?:access_token|api_secret|request_token|enctoken|checksum)[\"']?\s*[=:]\s*[\"']?)([^\s&\"',}]+)"
    ),
    re.compile(r"(?i)(authorization[\"']?\s*[=:]\s*[\"']?token\s+[^:\s]+:)([^\s\"',}]+)"),
]


def redact(text: str) -> str:
    """Return `text` with every credential value replaced by `***`."""
    for pattern in _PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Rewrites the record's message with credentials masked; never drops a record.

    String arguments are masked in place first, so a record whose formatter reads its `args` (uvicorn's
    access log takes the request line from them) keeps its shape; only a credential that the arguments
    alone do not hold makes the message itself the masked text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True
