"""alerting.shared.backoff: retries wait longer each time, within a cap, with half of each step random."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting.shared.backoff import backoff_delay


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [
        (0, 1.0, 2.0),
        (1, 2.0, 4.0),
        (2, 4.0, 8.0),
        (5, 32.0, 64.0),
        (7, 128.0, 256.0),
        (8, 150.0, 300.0),  # 512 > cap: the step is the cap
        (50, 150.0, 300.0),
    ],
)
def test_backoff_bounds_with_base_2_and_cap_300(attempt: int, low: float, high: float) -> None:
    assert backoff_delay(attempt, 2.0, 300.0, rand=lambda: 0.0) == low
    assert backoff_delay(attempt, 2.0, 300.0, rand=lambda: 1.0) == high


def test_backoff_grows_with_each_attempt_until_the_cap() -> None:
    delays = [backoff_delay(n, 0.5, 60.0, rand=lambda: 0.5) for n in range(12)]
    assert delays == sorted(delays)
    assert delays[1] > delays[0]
    assert max(delays) <= 60.0


@pytest.mark.parametrize("attempt", [1_000, 10**9, 10**100])
def test_huge_attempt_numbers_do_not_overflow(attempt: int) -> None:
    delay = backoff_delay(attempt, 2.0, 300.0, rand=lambda: 1.0)
    assert math.isfinite(delay)
    assert delay == 300.0


def test_fractional_base_and_cap_are_respected() -> None:
    assert backoff_delay(0, 0.2, 10.0, rand=lambda: 1.0) == pytest.approx(0.2)
    assert backoff_delay(3, 0.2, 1.0, rand=lambda: 1.0) == pytest.approx(1.0)


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=100.0),
    extra=st.floats(min_value=0.0, max_value=10_000.0),
    r=st.floats(min_value=0.0, max_value=1.0),
)
def test_delay_is_between_half_a_step_and_a_step_and_never_above_the_cap(
    attempt: int, base: float, extra: float, r: float
) -> None:
    cap = base + extra
    step = min(cap, base * 2.0 ** min(attempt, 60))
    delay = backoff_delay(attempt, base, cap, rand=lambda: r)
    assert step / 2 <= delay <= step <= cap
