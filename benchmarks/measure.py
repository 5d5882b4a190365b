"""Summaries of timing samples and plain-text tables for the benchmark scripts. Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The parts of an alert task that probe_worker.py times with BENCH_PROBE_DETAIL=1 (in this order on each line).
PROBE_PARTS = ("decide", "render", "smtp", "mark_sent")


@dataclass(frozen=True)
class Summary:
    """Percentiles of a list of durations, in seconds."""

    n: int
    p50: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of_ns(cls, samples_ns: Sequence[int]) -> Summary | None:
        return cls.of([s / 1e9 for s in samples_ns])

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary | None:
        if not samples:
            return None
        ordered = sorted(samples)
        return cls(
            n=len(ordered),
            p50=percentile(ordered, 50),
            p99=percentile(ordered, 99),
            max=ordered[-1],
            mean=sum(ordered) / len(ordered),
        )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def duration(seconds: float | None) -> str:
    """A duration in the unit that reads best: ``4.2 µs``, ``3.1 ms``, ``6.9 s``."""
    if seconds is None or math.isnan(seconds):
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(cells[0]))
    out = [title] if title else []
    out += [line(cells[0]), rule, *(line(r) for r in cells[1:])]
    return "\n".join(out)
