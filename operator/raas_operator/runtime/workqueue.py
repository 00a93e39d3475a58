"""A de-duplicating work queue of job names served by a few worker threads.

The semantics of Kubernetes controllers' work queues: a name added while it waits is not added
twice; a name added while a worker handles it is handled once more afterwards (its object
changed during the look), never by two workers at once; a look that raises is retried after a
back-off (0.5 s doubling to 30 s) instead of being lost. Handling order is first in, first out,
except that an urgent name (a job on a robot) goes ahead of every waiting one, a name added
`first` (a job just given a robot, whose pod is to be created) ahead of every urgent one too,
and `urgent_workers` more threads take urgent names only: a robot's next job never waits for a
worker busy with routine looks (reading results from the store, say), nor behind the looks of
other robots' jobs collecting their results.

A name added again while handled is looked at again as a routine look, however urgently it was
added: the change that came during the look is mostly the look's own write coming back through
the watch (a just-started job's Starting status, say), and an urgent second look at once would
act before the first look's pod is in the cache (creating it again, for a 409) and hold up other
robots' looks (on the operator benchmark, an urgent re-look did not shorten the dispatch tail).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from raas_operator.runtime.outage import is_api_outage, outage_summary

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


class WorkQueue:
    """Calls `handle(name)` for every name added, from `workers` daemon threads."""

    def __init__(
        self, handle: Callable[[str], None], *, workers: int = 4, urgent_workers: int = 1, name: str = "raas-reconcile"
    ) -> None:
        if workers < 1 or urgent_workers < 0:
            raise ValueError(f"a work queue needs at least one worker, got {workers} (and {urgent_workers} urgent)")
        self.handle = handle
        self._condition = threading.Condition()
        self._urgent: deque[str] = deque()
        self._waiting: deque[str] = deque()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._again: set[str] = set()
        self._failures: dict[str, int] = {}
        self._retry_timers: dict[str, threading.Timer] = {}
        self._stopped = False
        self.handled = 0
        """Looks completed, successful or not (for tests and benchmarks)."""
        self._threads = [
            threading.Thread(target=self._work, args=(False,), name=f"{name}-{index}", daemon=True)
            for index in range(workers)
        ] + [
            threading.Thread(target=self._work, args=(True,), name=f"{name}-urgent-{index}", daemon=True)
            for index in range(urgent_workers)
        ]

    def start(self) -> WorkQueue:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            for timer in self._retry_timers.values():
                timer.cancel()
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)

    def add(self, name: str, *, urgent: bool = False, first: bool = False) -> None:
        """Handle `name` (once, however often it is added before a worker takes it); `urgent`
        ahead of every waiting name; `first` (urgent too) ahead of every urgent one as well."""
        urgent = urgent or first
        with self._condition:
            if self._stopped:
                return
            if name in self._processing:
                self._again.add(name)  # (looked at again as a routine look: see the module docstring)
                return
            if name in self._queued:
                if not urgent or (name in self._urgent and not first):
                    return
                (self._urgent if name in self._urgent else self._waiting).remove(name)
            self._queued.add(name)
            if first:
                self._urgent.appendleft(name)
            else:
                (self._urgent if urgent else self._waiting).append(name)
            self._condition.notify_all()

    def __len__(self) -> int:
        with self._condition:
            return len(self._urgent) + len(self._waiting)

    def _work(self, urgent_only: bool) -> None:
        while True:
            with self._condition:
                while not self._urgent and (urgent_only or not self._waiting) and not self._stopped:
                    self._condition.wait()
                if self._stopped:
                    return
                name = (self._urgent or self._waiting).popleft()
                self._queued.discard(name)
                self._processing.add(name)
            failed = False
            try:
                self.handle(name)
            except Exception as error:
                failed = True
                if is_api_outage(error):  # (an API server restart: no stack trace, it is not a bug)
                    log.warning("reconciling %s waits for the API server: %s; retrying", name, outage_summary(error))
                else:
                    log.exception("reconciling %s failed; retrying", name)
            with self._condition:
                self._processing.discard(name)
                self.handled += 1
                again = name in self._again
                self._again.discard(name)
                if failed:
                    self._schedule_retry(name)
                else:
                    self._failures.pop(name, None)
            if again:
                self.add(name)

    def _schedule_retry(self, name: str) -> None:
        """(Holding the lock.) Add `name` again after its back-off."""
        failures = self._failures.get(name, 0) + 1
        self._failures[name] = failures
        delay = min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2 ** (failures - 1))
        previous = self._retry_timers.pop(name, None)
        if previous is not None:
            previous.cancel()
        timer = threading.Timer(delay, self._retry, args=(name,))
        timer.daemon = True
        self._retry_timers[name] = timer
        timer.start()

    def _retry(self, name: str) -> None:
        with self._condition:
            self._retry_timers.pop(name, None)
        self.add(name)
