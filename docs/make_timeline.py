"""Draw docs/throttle_timeline.png: a storm of one alert, and the mail it produces, computed by the real policy.

The occurrences go through ``MemoryStore`` (the same rules the Redis store runs in Lua) on a simulated clock;
nothing here re-implements the throttle.

    .venv/bin/python docs/make_timeline.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from alerting.shared.config import Rate
from alerting.shared.stores import Occurrence, StoreConfig
from alerting.shared.stores.memory import MemoryStore
from alerting.shared.throttle import Verdict

WINDOW = 300.0
OUT = Path(__file__).resolve().parent / "throttle_timeline.png"


def simulate() -> tuple[list[float], list[tuple[float, str, int]]]:
    """A storm from minute 1 to minute 13 (dense, then thinning), and a second one at minute 23.5."""
    rng = random.Random(7)
    times: list[float] = []
    t = 60.0
    while t < 13 * 60:
        times.append(t)
        t += rng.expovariate(1 / (0.5 if t < 8 * 60 else 4.0))
    times += [23.5 * 60 + i * 2.0 for i in range(40)]
    store = MemoryStore(StoreConfig(window=WINDOW, rate=Rate(30, 60.0), lease=60.0, ttl=86400.0))
    mails: list[tuple[float, str, int]] = []
    pending = sorted(times)
    clock = 0.0
    while clock < 32 * 60:
        while pending and pending[0] <= clock:
            at = pending.pop(0)
            occ = Occurrence(f"id{at}", "fp", 1, at, at, json.dumps({"t": at}), "db down")
            if store.admit(occ, now=at) is Verdict.SEND:
                mails.append((at, "alert", 1))
        store.roll_due(now=clock)
        for item in store.lease_outbox(now=clock):
            mails.append((clock, "digest", int(item.body["count"])))
            store.complete(item.item_id)
        clock += 1.0  # the workers' outbox poll
    return times, mails


def draw(times: list[float], mails: list[tuple[float, str, int]]) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 4.2), sharex=True, height_ratios=[1.2, 1])
    top.hist([t / 60 for t in times], bins=120, color="#cf222e", alpha=0.8)
    top.set_ylabel("criticals\nper 15 s")
    top.set_title(f"One alert storming: {len(times):,} criticals, {len(mails)} emails (throttle window 5 min)")
    for minute in range(0, 32, 5):
        for ax in (top, bottom):
            ax.axvline(minute, color="#d0d7de", lw=0.8, zorder=0)
    for at, kind, count in mails:
        x = at / 60
        if kind == "alert":
            bottom.plot([x], [1], marker="v", ms=12, color="#cf222e")
            bottom.annotate("first occurrence:\nmailed at once", (x, 1), (x + 0.3, 1.35), fontsize=8)
        else:
            bottom.plot([x], [0.4], marker="s", ms=10, color="#0969da")
            bottom.annotate(f"digest: {count:,} more", (x, 0.4), (x + 0.3, 0.05), fontsize=8)
    bottom.set_ylim(-0.2, 1.9)
    bottom.set_yticks([])
    bottom.set_ylabel("emails")
    bottom.set_xlabel("minutes")
    bottom.set_xlim(0, 32)
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)


if __name__ == "__main__":
    draw(*simulate())
    print(f"wrote {OUT}")
