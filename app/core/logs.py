"""Keep bearer tokens out of log lines.

Clients send their JWT as `?token=...` (what production clients do today); uvicorn logs
every WebSocket path with its query string, and so would any handler that prints a URL.
"""

import logging
import re

_TOKEN_IN_QUERY = re.compile(r"((?:^|[?&;\s\"'])(?:token|access|access_token|refresh)=)[^&\s\"'#]+", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text):
    return _BEARER.sub(r"\1[redacted]", _TOKEN_IN_QUERY.sub(r"\1[redacted]", text))


class RedactTokens(logging.Filter):
    """Rewrite a record's message with every token value replaced by [redacted]."""

    def filter(self, record):
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install(logger_names=("uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access")):
    """Attach the filter to the server loggers, whose handlers Django's LOGGING does not own."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
