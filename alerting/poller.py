"""The outbox poller: a thread in every worker's main process that ends due throttle windows and hands owed
digests and summaries to the pool as tasks. I/O.

Every worker runs one; the store's scripts are atomic, so any number of pollers behave as one, and when
the worker that opened a window is gone, another (or the next to start) still sends its digest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from alerting.errors import StoreError
from alerting.stores import StateStore

log = logging.getLogger("alerting.poller")


class OutboxPoller:
    def __init__(
        self,
        store: StateStore,
        publish: Callable[[str], None],
        *,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.publish = publish
        self.interval = interval
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="alerting-outbox", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def tick(self) -> int:
        """One round: end due windows, lease what may go now, publish a task per item. Returns items published."""
        now = self.clock()
        self.store.roll_due(now=now)
        items = self.store.lease_outbox(now=now, limit=20)
        for item in items:
            self.publish(item.item_id)
        return len(items)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                if self._failing:
                    log.warning("outbox poller: state store reachable again")
                    self._failing = False
            except (StoreError, OSError) as exc:
                if not self._failing:
                    log.warning("outbox poller: %s; will keep trying", exc)
                    self._failing = True
            except Exception:  # a bug must not silently end digests for this worker
                log.exception("outbox poller: unexpected error")
            self._stop.wait(self.interval)
