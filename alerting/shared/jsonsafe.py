"""Arbitrary Python values → bounded, JSON-safe values. Pure.

Log records carry whatever the caller put in ``extra=``: objects whose ``__repr__`` raises, bytes, sets,
recursive lists, megabyte strings, trees of thousands of nodes. Everything that leaves the application passes
through here, so the payload is always serialisable, bounded in size, and costs the logging thread a bounded
amount of work: a walk stops after a fixed number of nodes and characters, and builtin values (strings, bytes,
big containers) are cut *before* their ``repr`` is built. User code (``__repr__``, ``__str__``) still runs,
once per value shown.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable, Mapping, Sized
from typing import Any

JSONValue = Any  # the result is made of dict[str, ...], list, str, int, float, bool and None only

TRUNCATION_MARK = "…[truncated {n} chars]"
REDACTED = "[redacted]"

#: Whole walk of one ``to_json_safe`` call: values visited, and characters of text kept.
MAX_NODES = 300
MAX_CHARS = 16_000

# A builtin container longer than this is shown by a bounded repr (reprlib) rather than repr(): a list of a
# million ints would otherwise be turned into megabytes of text in the logging thread, only to be cut.
BIG_CONTAINER = 100

_BUILTIN_CONTAINERS = (list, tuple, dict, set, frozenset)
_BYTES_REPRS = (bytes.__repr__, bytearray.__repr__)

# Lone surrogates: what os.fsdecode() / surrogateescape make of bytes that are not UTF-8 (a Latin-1 file name),
# or a broken UTF-16 pair. UTF-8 cannot encode them, so a payload carrying one cannot be mailed.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _bounded_reprlib() -> reprlib.Repr:
    bounded = reprlib.Repr()
    bounded.maxlevel = 2
    bounded.maxlist = bounded.maxtuple = bounded.maxset = bounded.maxfrozenset = bounded.maxdict = 20
    bounded.maxstring = bounded.maxother = 200
    bounded.maxlong = 100
    return bounded


_REPRLIB = _bounded_reprlib()


def valid_text(text: str) -> str:
    """``text`` that UTF-8 can encode: each lone surrogate is shown as ``\\xNN`` (the byte ``surrogateescape`` kept
    for it, as Python shows undecodable bytes) or ``\\udNNN``, so the repair is visible and the bytes are known."""
    if text.isascii():  # O(1) in CPython: the common case costs nothing
        return text
    return _SURROGATE.sub(_escape_surrogate, text)


def _escape_surrogate(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def truncate(text: str, limit: int, *, keep_tail: bool = False) -> str:
    """Cap ``text`` at ``limit`` characters, marker included, saying exactly how many were cut.

    ``keep_tail`` keeps a quarter from the start and the rest from the end: for tracebacks, where the
    exception itself is at the bottom.
    """
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    for _ in range(3):  # the marker's own length depends on the number it shows; settles in one or two rounds
        mark = TRUNCATION_MARK.format(n=f"{cut:,}")
        room = max(limit - len(mark), 0)
        cut = len(text) - room
    mark = TRUNCATION_MARK.format(n=f"{cut:,}")
    if keep_tail:
        head = room // 4
        return text[:head] + mark + text[len(text) - (room - head) :]
    return text[:room] + mark


def safe_repr(value: object, limit: int) -> str:
    """``repr(value)``, or a description of why it could not be had; capped at ``limit``.

    Long strings and bytes are cut before ``repr`` copies them, big builtin containers are shown by a bounded
    repr: the cost does not grow with the value's size.
    """
    try:
        cls = type(value)
        if (
            isinstance(value, (str, bytes, bytearray))
            and len(value) > limit
            and (cls.__repr__ is str.__repr__ or cls.__repr__ in _BYTES_REPRS)
        ):
            unit = "chars" if isinstance(value, str) else "bytes"
            return _cut(repr(value[:limit]), limit, f"…[truncated: {len(value):,} {unit} in all]")
        if cls in _BUILTIN_CONTAINERS and len(value) > BIG_CONTAINER:  # type: ignore[arg-type]
            return _cut(_REPRLIB.repr(value), limit, f"…[truncated: {len(value):,} items in all]")  # type: ignore[arg-type]
        text = repr(value)
    except Exception as exc:  # user code: anything can happen in __repr__
        return f"<unrepresentable {type(value).__qualname__}: repr raised {type(exc).__name__}>"
    return truncate(text, limit)


def _cut(text: str, limit: int, mark: str) -> str:
    return text[: max(limit - len(mark), 0)] + mark


def safe_str(value: object, limit: int) -> str:
    """``str(value)`` (falling back to :func:`safe_repr`); capped at ``limit``, bounded as :func:`safe_repr` is."""
    if isinstance(value, str):
        return truncate(value, limit)
    cls = type(value)
    if cls in (bytes, bytearray) or cls in _BUILTIN_CONTAINERS:  # str() of these is their repr()
        return safe_repr(value, limit)
    try:
        text = str(value)
    except Exception:
        return safe_repr(value, limit)
    return truncate(text, limit)


def to_json_safe(
    value: object,
    *,
    is_secret_key: Callable[[str], bool],
    max_str: int = 500,
    max_items: int = 30,
    max_depth: int = 3,
    max_nodes: int = MAX_NODES,
    max_chars: int = MAX_CHARS,
) -> JSONValue:
    """Convert ``value`` to plain JSON types, bounded in depth, items, string length and total size.

    Values under keys that ``is_secret_key`` flags are replaced by ``"[redacted]"``, at any depth, and so is the
    second item of a ``(key, value)`` pair (a tuple or list of two whose first item is such a key: HTTP headers
    as a list of pairs). The walk visits at most ``max_nodes`` values and keeps at most ``max_chars`` characters
    of text; past either, what is left is replaced by a marker saying so.
    """
    return _Walk(is_secret_key, max_str, max_items, max_nodes, max_chars).convert(value, max_depth)


class _Walk:
    """One bounded walk: the budgets it has left and the containers on the current path (to spot cycles)."""

    def __init__(
        self, is_secret_key: Callable[[str], bool], max_str: int, max_items: int, max_nodes: int, max_chars: int
    ) -> None:
        self.is_secret_key = is_secret_key
        self.max_str = max_str
        self.max_items = max_items
        self.nodes = max_nodes
        self.chars = max_chars
        self.path: set[int] = set()

    def text(self, text: str) -> str:
        out = truncate(text, min(self.max_str, max(self.chars, 0)))
        self.chars -= len(out)
        return out

    def convert(self, value: object, depth: int) -> JSONValue:  # noqa: C901 -- one walk step: every budget check (nodes, depth, items, recursion) in one place, so none is skipped
        self.nodes -= 1
        # Exact type checks first: subclasses of str/int may override __str__/__repr__ and are treated as objects.
        kind = type(value)
        if value is None or kind is bool or kind is int:
            return value
        if kind is str:
            return self.text(value)  # type: ignore[arg-type]
        if kind is float:
            return value if math.isfinite(value) else repr(value)  # type: ignore[arg-type]
        container: Mapping[object, object] | list[object] | tuple[object, ...] | set[object] | frozenset[object]
        if isinstance(value, (Mapping, list, tuple, set, frozenset)):
            container = value
        else:
            return self.text(safe_repr(value, self.max_str))
        if id(container) in self.path:
            return f"<recursive {kind.__qualname__}>"
        if depth <= 0:
            return f"<{kind.__qualname__} with {_size(container)} items>"
        self.path.add(id(container))
        try:
            if isinstance(container, Mapping):
                return self._mapping(container, depth)
            if isinstance(container, (list, tuple)) and len(container) == 2 and self._is_secret_name(container[0]):
                return [self.convert(container[0], depth - 1), REDACTED]  # a (key, value) pair: a header, a field
            items: list[JSONValue] = []
            for index, item in enumerate(container):
                if index >= self.max_items:
                    items.append(f"…[{_size(container) - self.max_items} more]")
                    break
                if self.nodes <= 0:
                    items.append(f"…[{_size(container) - index} more not shown: size limit]")
                    break
                items.append(self.convert(item, depth - 1))
            return items
        except Exception as exc:  # a user mapping or iterable that fails while being walked
            return f"<unreadable {kind.__qualname__}: {type(exc).__name__}>"
        finally:
            self.path.discard(id(container))

    def _is_secret_name(self, key: object) -> bool:
        kind = type(key)
        if kind is str:
            return self.is_secret_key(key)  # type: ignore[arg-type]
        if kind is bytes:
            return self.is_secret_key(safe_str(key, 100))
        return False

    def _mapping(self, value: Mapping[object, object], depth: int) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= self.max_items:
                out["…"] = f"[{len(value) - self.max_items} more]"
                break
            if self.nodes <= 0:
                out["…"] = f"[{len(value) - index} more not shown: size limit]"
                break
            name = safe_str(key, 100)
            if self.is_secret_key(name):
                out[name] = REDACTED
            else:
                out[name] = self.convert(item, depth - 1)
        return out


def _size(container: Sized) -> int:
    try:
        return len(container)
    except Exception:  # a user container whose __len__ fails
        return -1
