"""Secret redaction: what must never leave the application. Pure.

Two rules. A value stored under a sensitive *key* (in ``extra=`` or the request context, at any depth) is
replaced, whatever it is; so is the value of a ``(key, value)`` pair with a sensitive key (HTTP headers kept
as a list of pairs). In free *text* (message, traceback, stack, string extras), ``key=value`` / ``key: value``
/ ``'key', 'value'`` pairs with a sensitive key and the password part of ``scheme://user:password@host`` URLs
are replaced.

:meth:`Redactor.payload` is the last step before an alert leaves the application, so it also makes every text
in it valid UTF-8 (:func:`alerting.shared.jsonsafe.valid_text`), off the logging thread.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from alerting.shared.jsonsafe import REDACTED, valid_text

DEFAULT_SECRET_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "session",
)

# Payload fields holding free text written by the application (or its exceptions).
_TEXT_FIELDS = ("message", "template", "traceback", "stack")
_STRUCTURED_FIELDS = ("extra", "context")

_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)([^\s@/]+)(@)")


class Redactor:
    """Redacts secrets by key and in text. Build once (per handler), use from any thread."""

    def __init__(self, secret_keys: Iterable[str] = DEFAULT_SECRET_KEYS) -> None:
        keys = tuple(sorted({k.strip().lower().replace("-", "_") for k in secret_keys if k.strip()}))
        self.secret_keys = keys
        # The cache makes the common case (the same few extra names, record after record) a dict lookup.
        self.is_secret_key = lru_cache(maxsize=1024)(self._is_secret_key)
        self._pair: re.Pattern[str] | None = None
        # Spellings a key can take in text (api_key, api-key, apikey): if none occurs, the regex need not run.
        self._spellings = tuple({v for k in keys for v in (k, k.replace("_", "-"), k.replace("_", ""))})
        if keys:
            # "api_key" also matches api-key, apikey and X-Api-Key, as key lookups fold "-" to "_".
            names = "|".join(re.escape(k).replace("_", "[-_]?") for k in keys)
            # key: any word containing a sensitive name (db_password, X-Auth-Token, csrftoken);
            # value: a quoted string, an auth scheme and its credentials, or a run of non-separators.
            # Or, as the repr of a pair shows it: a quoted key, a comma, a quoted value ("('Authorization', 'x')").
            self._pair = re.compile(
                rf"(?i)(\b[\w-]*(?:{names})[\w-]*\b[\"']?\s*[=:]\s*)"
                r"((?:Bearer|Basic|Digest|Token)\s+[^\s,;&\"']+|\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)"
                rf"|(\b[\w-]*(?:{names})[\w-]*\b[\"']\s*,\s*)(\"[^\"]*\"|'[^']*')"
            )

    def _is_secret_key(self, key: str) -> bool:
        folded = key.lower().replace("-", "_")
        return any(k in folded for k in self.secret_keys)

    def text(self, text: str) -> str:
        """``text`` with secret ``key=value`` pairs and URL passwords replaced."""
        # Most text holds no secret: substring checks in C decide that faster than the regexes (publisher thread).
        folded = text.lower()
        if "://" not in text and not any(s in folded for s in self._spellings):
            return text
        if self._pair is not None:
            text = self._pair.sub(_keep_key, text)
        return _URL_PASSWORD.sub(rf"\1{REDACTED}\3", text)

    def payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``payload`` with secrets removed from its text and structured fields, every text valid UTF-8."""
        out = dict(payload)
        for name, value in out.items():
            if type(value) is str and not value.isascii():
                out[name] = valid_text(value)  # a file name that is not UTF-8 (os.fsdecode), in any field
        for name in _TEXT_FIELDS:
            value = out.get(name)
            if isinstance(value, str) and value:
                out[name] = self.text(value)
        for name in _STRUCTURED_FIELDS:
            value = out.get(name)
            if value:
                out[name] = self._walk(value)
        return out

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(valid_text(value))
        if isinstance(value, dict):
            return {valid_text(k): REDACTED if self.is_secret_key(k) else self._walk(v) for k, v in value.items()}
        if isinstance(value, list):
            if len(value) == 2 and isinstance(value[0], str) and self.is_secret_key(value[0]):
                return [self._walk(value[0]), REDACTED]  # a (key, value) pair, as JSON has it: a list of two
            return [self._walk(v) for v in value]
        return value


def _keep_key(match: re.Match[str]) -> str:
    return (match.group(1) or match.group(3)) + REDACTED  # the key part of whichever form matched
