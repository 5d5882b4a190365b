"""Unique ids for alerts and task messages, without a system call each. Thread-safe, fork-aware.

``uuid4()`` reads the kernel's random source every time: a few microseconds, three times per alert, in the
publisher thread that shares the GIL with the application. A random per-process prefix and a counter are as
unique (the prefix changes in a forked child) and cost a fraction.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid

_lock = threading.Lock()
_pid = -1
_prefix = ""
_counter = itertools.count()


def new_id() -> str:
    """A 32-character id: 20 random hex digits for this process, then a counter."""
    global _pid, _prefix, _counter
    pid = os.getpid()
    if pid != _pid:
        with _lock:
            if pid != _pid:
                _prefix = uuid.uuid4().hex[:20]
                _counter = itertools.count()
                _pid = pid
    return f"{_prefix}{next(_counter):012x}"
