"""Framework adapters (``alerting.contrib.django``, ``alerting.contrib.flask``) and what they share: the shape of
the request context, query-string redaction, setting checks, and the CRITICAL record for an unhandled exception.

Adapters translate framework settings into :class:`~alerting.AlertHandler` keyword arguments and each request into
the alert context (:mod:`alerting.producer.context`); the core never reads framework state. Pure, except
:func:`log_unhandled`, which logs.

The request context always holds ``method``, ``path`` and ``query_string`` (values of secret-looking parameters
replaced). Personal data (``remote_addr``, ``user_id``, submitted form fields) is added only when the adapter's
``SEND_PII`` setting allows it.
"""

from __future__ import annotations

import logging
import sysconfig
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import unquote_plus

from alerting.errors import ConfigError
from alerting.shared.config import parse_bool, parse_level
from alerting.shared.jsonsafe import REDACTED, safe_str

__all__ = ["UNHANDLED_TEMPLATE", "log_unhandled", "parse_flag", "parse_level", "redact_query", "request_context"]

#: The message of the alert for an unhandled exception: type, method, path, then ": <exception text>" if any.
#: A constant template, so the fingerprint groups by exception type and raise site, not by URL.
UNHANDLED_TEMPLATE = "Unhandled %s on %s %s%s"

# Frames under these directories are library code; the raise site reported is the innermost frame outside them.
_LIBRARY_DIRS = tuple(
    sorted({path for key in ("stdlib", "platstdlib", "purelib", "platlib") if (path := sysconfig.get_paths().get(key))})
)


def redact_query(query: str, is_secret: Callable[[str], bool]) -> str:
    """``query`` as sent, except the values of parameters whose name ``is_secret``: ``a=1&token=[redacted]``."""
    pieces = []
    for piece in query.split("&"):
        name, sep, _ = piece.partition("=")
        pieces.append(f"{name}={REDACTED}" if sep and is_secret(unquote_plus(name)) else piece)
    return "&".join(pieces)


def request_context(*, method: str, path: str, query: str, is_secret: Callable[[str], bool]) -> dict[str, Any]:
    """The context every request gets, personal data or not."""
    context: dict[str, Any] = {"method": method, "path": path}
    if query:
        context["query_string"] = redact_query(query, is_secret)
    return context


def parse_flag(setting: str, value: object) -> bool:
    """``True``/``False``, or a string as in environment variables (``"true"``, ``"0"``...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return parse_bool(setting, value)
    raise ConfigError(setting, f"expected True or False, got {value!r}")


def log_unhandled(logger: logging.Logger, exc: BaseException, *, method: str, path: str) -> None:
    """Log ``exc``, which the framework is about to turn into a 500 response, as one CRITICAL record on ``logger``.

    The record's source location is where the exception was raised (the innermost frame outside the standard
    library and installed packages), so the alert's "Source" and fingerprint point at the failing code rather
    than at the adapter. Never raises: it runs inside the framework's own error handling.
    """
    try:
        if not logger.isEnabledFor(logging.CRITICAL):
            return
        filename, lineno, func = _raise_site(exc.__traceback__)
        detail = safe_str(exc, 300)
        args = (type(exc).__qualname__, method, path, f": {detail}" if detail else "")
        exc_info = (type(exc), exc, exc.__traceback__)
        record = logger.makeRecord(
            logger.name, logging.CRITICAL, filename, lineno, UNHANDLED_TEMPLATE, args, exc_info, func
        )
        logger.handle(record)
    except Exception:  # the framework still logs and answers the request its own way
        logging.getLogger(__name__).debug("could not log an unhandled exception", exc_info=True)


def _raise_site(tb: TracebackType | None) -> tuple[str, int, str | None]:
    innermost = ours = None
    while tb is not None:
        innermost = tb
        if not tb.tb_frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
            ours = tb
        tb = tb.tb_next
    site = ours or innermost
    if site is None:
        return "(unknown file)", 0, None
    code = site.tb_frame.f_code
    return code.co_filename, site.tb_lineno, code.co_name
