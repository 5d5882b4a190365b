"""How long one delivery may take, from the SMTP timeout: the SMTP transaction deadline and the task's soft and
hard time limits. Pure, and imports nothing of the package, so the settings check, the SMTP sender and the Celery
configuration all use this one definition.
"""

from __future__ import annotations

from typing import NamedTuple

#: A whole SMTP transaction may take this many per-operation timeouts (ALERTING_SMTP_TIMEOUT) at most.
TRANSACTION_TIMEOUTS = 3.0
#: Seconds a task may spend on the state store (a few Redis round trips, 5 s socket timeout each) besides SMTP.
STORE_ALLOWANCE = 10.0
#: Seconds between the soft time limit (the task settles as a retry or a dead letter) and the hard one (killed).
SOFT_TO_HARD = 5.0


class TimeLimits(NamedTuple):
    soft: float
    hard: float


def transaction_deadline(smtp_timeout: float) -> float:
    """Seconds one send may take in all, from the per-operation timeout. The task's time limits sit above it."""
    return smtp_timeout * TRANSACTION_TIMEOUTS


def task_time_limits(smtp_timeout: float) -> TimeLimits:
    """Above the SMTP transaction deadline, so a slow server ends as a retry first; the soft limit catches anything
    else that hangs; the hard limit kills what ignores it. A claim to send an alert is held for ``hard`` seconds."""
    soft = transaction_deadline(smtp_timeout) + STORE_ALLOWANCE
    return TimeLimits(soft=soft, hard=soft + SOFT_TO_HARD)
