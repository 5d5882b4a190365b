"""Arbitrary Python values → bounded, JSON-safe values. Pure.

Log records carry whatever the caller put in ``extra=``: objects whose ``__repr__`` raises, bytes, sets,
recursive lists, megabyte strings. Everything that leaves the application passes through here, so the
payload is always serialisable, bounded in size, and never runs user code more than once per value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sized
from typing import Any

JSONValue = Any  # the result is made of dict[str, ...], list, str, int, float, bool and None only

TRUNCATION_MARK = "…[truncated {n} chars]"
REDACTED = "[redacted]"


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
    """``repr(value)``, or a description of why it could not be had; capped at ``limit``."""
    try:
        text = repr(value)
    except Exception as exc:  # user code: anything can happen in __repr__
        return f"<unrepresentable {type(value).__qualname__}: repr raised {type(exc).__name__}>"
    return truncate(text, limit)


def safe_str(value: object, limit: int) -> str:
    """``str(value)`` (falling back to :func:`safe_repr`); capped at ``limit``."""
    if isinstance(value, str):
        return truncate(value, limit)
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
) -> JSONValue:
    """Convert ``value`` to plain JSON types, bounded in depth, items and string length.

    Values under keys that ``is_secret_key`` flags are replaced by ``"[redacted]"``, at any depth.
    """
    return _convert(value, is_secret_key, max_str, max_items, max_depth, set())


def _convert(
    value: object,
    is_secret_key: Callable[[str], bool],
    max_str: int,
    max_items: int,
    depth: int,
    path: set[int],
) -> JSONValue:
    # Exact type checks first: subclasses of str/int may override __str__/__repr__ and are treated as objects.
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return value
    if isinstance(value, str) and kind is str:
        return truncate(value, max_str)
    if isinstance(value, float) and kind is float:
        return value if math.isfinite(value) else repr(value)
    container: Mapping[object, object] | list[object] | tuple[object, ...] | set[object] | frozenset[object]
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        container = value
    else:
        return safe_repr(value, max_str)
    if id(container) in path:
        return f"<recursive {kind.__qualname__}>"
    if depth <= 0:
        return f"<{kind.__qualname__} with {_size(container)} items>"
    path.add(id(container))
    try:
        if isinstance(container, Mapping):
            return _convert_mapping(container, is_secret_key, max_str, max_items, depth, path)
        items: list[JSONValue] = []
        for index, item in enumerate(container):
            if index >= max_items:
                items.append(f"…[{_size(container) - max_items} more]")
                break
            items.append(_convert(item, is_secret_key, max_str, max_items, depth - 1, path))
        return items
    except Exception as exc:  # a user mapping or iterable that fails while being walked
        return f"<unreadable {kind.__qualname__}: {type(exc).__name__}>"
    finally:
        path.discard(id(container))


def _size(container: Sized) -> int:
    try:
        return len(container)
    except Exception:  # a user container whose __len__ fails
        return -1


def _convert_mapping(
    value: Mapping[object, object],
    is_secret_key: Callable[[str], bool],
    max_str: int,
    max_items: int,
    depth: int,
    path: set[int],
) -> dict[str, JSONValue]:
    out: dict[str, JSONValue] = {}
    for index, (key, item) in enumerate(value.items()):
        if index >= max_items:
            out["…"] = f"[{len(value) - max_items} more]"
            break
        name = safe_str(key, 100)
        if is_secret_key(name):
            out[name] = REDACTED
        else:
            out[name] = _convert(item, is_secret_key, max_str, max_items, depth - 1, path)
    return out
