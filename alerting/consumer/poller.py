"""The outbox poller: a thread in every worker's main process that ends due throttle windows and hands owed
digests and summaries to the pool as tasks. I/O.

Every worker runs one; the store's scripts are atomic, so any number of pollers behave as one, and when
the worker that opened a window is gone, another (or the next to start) still sends its digest.

A worker whose poller died would keep taking alerts but never send a digest again: half alive, and green in
every health check. So transient store errors are retried forever, but anything else stops the whole worker
with a non-zero exit code and an ERROR log naming the cause, for its supervisor to restart it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from alerting.errors import StoreError
from alerting.shared.stores import StateStore

log = logging.getLogger("alerting.poller")

EX_SOFTWARE = 70  # sysexits.h: internal software error
STOP_GRACE = 60.0  # seconds a warm shutdown may take (tasks finishing) before the process is ended outright


def stop_worker(exc: BaseException) -> None:
    """Ask the Celery worker running in this process for a warm shutdown that exits with EX_SOFTWARE.

    Celery's main loop checks this flag on every turn (it is what its SIGTERM handler sets, with exit code 0);
    if the worker is still there after STOP_GRACE, the process ends without it.
    """
    from celery.worker import state

    state.should_stop = EX_SOFTWARE  # type: ignore[assignment]  # celery declares it None; it holds an exit code

    def force() -> None:
        time.sleep(STOP_GRACE)
        log.error("outbox poller: the worker did not stop within %gs; exiting", STOP_GRACE)
        os._exit(EX_SOFTWARE)

    threading.Thread(target=force, name="alerting-outbox-exit", daemon=True).start()


class OutboxPoller:
    def __init__(
        self,
        store: StateStore,
        publish: Callable[[str], None],
        *,
        interval: float,
        clock: Callable[[], float] = time.time,
        on_fatal: Callable[[BaseException], None] = stop_worker,
    ) -> None:
        self.store = store
        self.publish = publish
        self.interval = interval
        self.clock = clock
        self.on_fatal = on_fatal
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
        try:
            while not self._stop.is_set():
                self._round()
                self._stop.wait(self.interval)
        except BaseException as exc:  # the thread is ending: the worker must not go on without it
            log.error(
                "outbox poller died (%s: %s): no digest or summary would be sent by this worker; stopping it "
                "with exit code %d so that its supervisor restarts it",
                type(exc).__name__,
                exc,
                EX_SOFTWARE,
                exc_info=exc,
            )
            self.on_fatal(exc)

    def _round(self) -> None:
        try:
            self.tick()
            if self._failing:
                log.warning("outbox poller: state store reachable again")
                self._failing = False
        except (StoreError, OSError) as exc:  # Redis down, hung or failing over: keep trying, as the tasks do
            if not self._failing:
                log.warning("outbox poller: %s; will keep trying", exc)
                self._failing = True
