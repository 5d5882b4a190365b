"""Exponential backoff with jitter: the one formula for the publisher's reconnects and the worker's retries. Pure."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before try number ``attempt + 1`` (``attempt`` counts from 0).

    "Equal jitter": half of the exponential step is fixed, half random, so a crowd of clients that failed
    together spreads out while each still waits at least half a step.
    """
    step = min(cap, base * 2.0 ** min(attempt, 60))
    return step / 2 + rand() * step / 2
