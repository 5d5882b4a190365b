"""Unique ids for alerts and task messages, without a system call each. Thread-safe, fork-aware.

``uuid4()`` reads the kernel's random source every time: a few microseconds, three times per alert, in the
publisher thread that shares the GIL with the application. A random per-process prefix and a counter are as
unique (the prefix changes in a forked child: see ``alerting.shared.forks.PerProcess``) and cost a fraction.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

from alerting.shared.forks import PerProcess


@dataclass(frozen=True)
class _Sequence:
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:20])
    counter: itertools.count[int] = field(default_factory=itertools.count)


_sequence = PerProcess(_Sequence)


def new_id() -> str:
    """A 32-character id: 20 random hex digits for this process, then a counter."""
    sequence = _sequence.get()
    return f"{sequence.prefix}{next(sequence.counter):012x}"
