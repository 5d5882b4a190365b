"""An exception as traceback text, at a bounded cost. Pure; runs in the logging thread.

``traceback.format_exception`` costs the calling thread about 60-100 µs per frame on Python 3.11 (it parses
each source line again to draw the ``^^^^`` markers) and has no bound: a RecursionError carries ~1000 frames
(15 ms or more), a chain of exceptions can be any length, and ``str()`` of an exception built around a 50 MB
string copies it twice. This module writes the same text as Python, minus the ``^^^^`` lines, within fixed
bounds: per traceback the outermost and innermost frames, the newest exceptions of a chain and its root cause,
a few members of an exception group, and the exception's own message cut before it is copied. Every cut says
what it left out with a visible ``…[truncated …]`` line.
"""

from __future__ import annotations

import builtins
import traceback
from collections import deque
from collections.abc import Iterator
from types import FrameType, FunctionType, TracebackType

from alerting.shared.jsonsafe import safe_repr, truncate

#: Frames kept per traceback: the outermost (the entry point) and the innermost (where it was raised).
HEAD_FRAMES = 5
TAIL_FRAMES = 20
#: Frames formatted in all, across a chain and exception groups.
TOTAL_FRAMES = 60
#: Exceptions of a __cause__/__context__ chain shown: the newest, and always the root cause.
CHAIN_MAX = 5
#: Members of an exception group shown, and how deep groups in groups are followed.
GROUP_WIDTH = 5
GROUP_DEPTH = 2
#: Exceptions shown in all, across a chain and exception groups.
EXCEPTIONS_MAX = 20
#: Characters of one exception's message (``str(exc)``).
EXC_TEXT_MAX = 4_000
#: Links of a chain followed at most while looking for its root cause.
_CHAIN_WALK_MAX = 10_000

_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"
_HEADER = "Traceback (most recent call last):\n"
# Exception groups exist from Python 3.11 on.
_GROUP: type[BaseException] | None = getattr(builtins, "BaseExceptionGroup", None)


def format_exception(exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> str:
    """Traceback text for one ``exc_info`` triple, like ``"".join(traceback.format_exception(...))``, bounded."""
    if not isinstance(exc, BaseException):
        return "".join(traceback.format_exception_only(exc_type, exc)) if exc_type is not None else ""
    return "".join(_Writer().chain(exc, tb, depth=0))


class _Writer:
    """One bounded rendering: the frames and exceptions it may still show, and the exceptions already shown."""

    def __init__(self) -> None:
        self.frames_left = TOTAL_FRAMES
        self.exceptions_left = EXCEPTIONS_MAX
        self.seen: set[int] = set()

    def chain(self, exc: BaseException, tb: TracebackType | None, depth: int) -> list[str]:
        links = _chain(exc, tb, self.seen)  # newest first: (exception, its traceback, how it links to the next)
        shown = links if len(links) <= CHAIN_MAX else links[: CHAIN_MAX - 1] + links[-1:]
        # Rendered newest first, so the budget goes to the exception that was logged; printed oldest first, as
        # Python does (the root cause at the top).
        parts = [self.one(one, one_tb, depth) for one, one_tb, _ in shown]
        lines: list[str] = []
        for i in range(len(shown) - 1, -1, -1):
            lines += parts[i]
            if i > 0:
                if i == len(shown) - 1 and len(links) > len(shown):
                    hidden = len(links) - len(shown)
                    lines.append(f"\n…[truncated: {hidden:,} more exceptions of this chain not shown]\n")
                lines.append(_CAUSE if shown[i - 1][2] == "cause" else _CONTEXT)
        return lines

    def one(self, exc: BaseException, tb: TracebackType | None, depth: int) -> list[str]:
        self.exceptions_left -= 1
        if self.exceptions_left < 0:
            return ["…[truncated: exception not shown, too many in this traceback]\n"]
        lines = [_HEADER, *self.frames(tb)] if tb is not None else []
        lines += _exception_only(exc)
        members = getattr(exc, "exceptions", None) if _GROUP is not None and isinstance(exc, _GROUP) else None
        if isinstance(members, tuple) and members:
            lines += self.group(members, depth)
        return lines

    def frames(self, tb: TracebackType) -> list[str]:
        budget = max(self.frames_left, 1)  # at least the innermost frame, where it was raised
        head_n = min(HEAD_FRAMES, budget // 4)
        tail_n = min(TAIL_FRAMES, budget - head_n)
        head: list[tuple[FrameType, int]] = []
        tail: deque[tuple[FrameType, int]] = deque(maxlen=tail_n)
        total = 0
        for frame, lineno in _walk(tb):  # following tb_next is cheap; extracting a frame is what costs
            if total < head_n:
                head.append((frame, lineno))
            else:
                tail.append((frame, lineno))
            total += 1
        self.frames_left -= len(head) + len(tail)
        lines = traceback.StackSummary.extract(iter(head)).format()
        omitted = total - len(head) - len(tail)
        if omitted:
            lines.append(f"  …[truncated: {omitted:,} frames not shown]\n")
        return lines + traceback.StackSummary.extract(iter(tail)).format()

    def group(self, members: tuple[BaseException, ...], depth: int) -> list[str]:
        if depth >= GROUP_DEPTH:
            return [f"  …[truncated: {len(members)} sub-exceptions not shown]\n"]
        lines: list[str] = []
        for n, member in enumerate(members[:GROUP_WIDTH], 1):
            lines.append(f"  +---------------- {n} of {len(members)} ----------------\n")
            sub = "".join(self.chain(member, member.__traceback__, depth + 1))
            lines.extend("  | " + line for line in sub.splitlines(keepends=True))
        if len(members) > GROUP_WIDTH:
            lines.append(f"  …[truncated: {len(members) - GROUP_WIDTH} more sub-exceptions not shown]\n")
        return lines


def _walk(tb: TracebackType | None) -> Iterator[tuple[FrameType, int]]:
    while tb is not None:
        yield tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next


def _chain(
    exc: BaseException, tb: TracebackType | None, seen: set[int]
) -> list[tuple[BaseException, TracebackType | None, str]]:
    """The chain from ``exc`` back to its root cause, newest first, each with how it links to the next older."""
    out: list[tuple[BaseException, TracebackType | None, str]] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(out) < _CHAIN_WALK_MAX:
        seen.add(id(current))
        if current.__cause__ is not None:
            older, how = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            older, how = current.__context__, "context"
        else:
            older, how = None, ""
        out.append((current, tb, how))
        current = older
        tb = older.__traceback__ if older is not None else None
    return out


def _exception_only(exc: BaseException) -> list[str]:
    """``ValueError: message`` (SyntaxError's location, notes), with the message cut before it is copied.

    Written here rather than by ``traceback.format_exception_only``, which builds a TracebackException: that
    walks the exception's whole chain and every traceback in it (25 ms for a chain of 200).
    """
    name = _type_name(type(exc))
    args = exc.args if isinstance(exc.args, tuple) else ()
    if not isinstance(type(exc).__str__, FunctionType) and any(
        isinstance(a, (str, bytes, bytearray)) and len(a) > EXC_TEXT_MAX for a in args
    ):
        # A builtin __str__ would copy (or repr) the whole argument: show the arguments, each cut first.
        text = ", ".join(
            truncate(a, EXC_TEXT_MAX, keep_tail=True) if isinstance(a, str) else safe_repr(a, EXC_TEXT_MAX)
            for a in args[:5]
        )
    else:
        try:
            text = truncate(str(exc), EXC_TEXT_MAX, keep_tail=True)  # user code (__str__) runs here, once
        except Exception:
            text = "<exception str() failed>"
    lines: list[str] = []
    if isinstance(exc, SyntaxError):  # where the bad code is, as Python shows it (without the caret)
        lines.append(f'  File "{exc.filename or "<string>"}", line {exc.lineno}\n')
        if exc.text:
            lines.append(f"    {truncate(exc.text.strip(), 500)}\n")
        text = str(exc.msg)
    lines.append(f"{name}: {text}\n" if text else f"{name}\n")
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        lines.extend(
            f"{truncate(note, 1000)}\n" if isinstance(note, str) else f"{safe_repr(note, 1000)}\n"
            for note in notes[:10]
        )
    return lines


def _type_name(cls: type[BaseException]) -> str:
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", None) or safe_repr(cls, 200)
    return name if module in (None, "builtins", "__main__") else f"{module}.{name}"
