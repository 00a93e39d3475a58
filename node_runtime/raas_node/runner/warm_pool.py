"""Warm containers: per slot (a robot), one container started ahead of its job, for fast dispatch.

Starting a container (``podman run`` until its first program runs) takes a few hundred ms, most
of the ≤ 200 ms a free robot may wait for its next controller. `ContainerPool` keeps, per slot,
one container already started with that slot's shape (`raas_node.runner.container.ContainerShape`:
the job's standard limits, its robot's agent socket, a fresh size-limited scratch, every
hardening of `run_in_container`), whose starter waits for its job. `ContainerPool.run` hands the
job over (code, entrypoint, environment with the session token) and supervises it exactly as
`run_in_container` does: same `RunOutcome`, verdicts and messages.

* Each container serves exactly one job: taken out of the pool when a job comes, removed when
  it ends (in the background), never handed to another job. Its replacement starts at once, in
  the background, while the job runs.
* A job that no warm container fits (another shape — different limits, agent socket or
  ``python_path`` —, a time limit beyond what the container's lifetime allows, no container
  ready yet, a dead one) runs in a cold container (`run_in_container`). A slot never prepared
  takes the shape of its first job.
* Time limits count from the hand-over. No container outlives its job without a runner: an
  idle one ends when its runner's pipe closes; a running one is killed `hard_stop_after_s` after
  the hand-over by a detached host process; and each has ``--timeout`` ``max_idle_s + max_job_s``
  plus margins (idle containers are replaced after `max_idle_s`, and a job longer than
  `max_job_s` runs cold). All carry the pool's `owner` label, for `reap_containers`.
* One background thread starts and removes containers, one at a time (starts first).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from raas_node.runner.container import (
    START_TIMEOUT_S,
    ContainerLaunchError,
    ContainerShape,
    StartedContainer,
    check_podman,
    discard,
    hard_stop_after_s,
    run_in_container,
    run_started,
    start_container,
)
from raas_node.runner.launch import RunLimits, RunOutcome, RunRequest

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE_S = 30.0
"""How long a slot whose container failed to start waits before the next try (its jobs run cold)."""
_LOOK_INTERVAL_S = 5.0


class ContainerPool:
    """Warm containers of `image`, one per slot, each for one job; see the module docstring."""

    def __init__(
        self,
        image: str,
        *,
        owner: str | None = None,
        scratch_bytes: int | None = None,
        max_idle_s: float = 600.0,
        max_job_s: float = 600.0,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        """`owner` labels every container (`reap_containers`); `scratch_bytes` overrides the limits'
        scratch space; `max_job_s` is the longest time limit a warm container takes."""
        self.image, self.owner, self.scratch_bytes = image, owner, scratch_bytes
        self.max_idle_s, self.start_timeout_s = max_idle_s, start_timeout_s
        self.container_timeout_s = hard_stop_after_s(max_idle_s + max_job_s)
        self._shapes: dict[str, ContainerShape] = {}
        self._warm: dict[str, StartedContainer] = {}
        self._retry_at: dict[str, float] = {}
        self._to_discard: list[StartedContainer] = []
        self._closed = False
        self.warm_runs = 0
        """Jobs run in a warm container so far."""
        self.cold_runs = 0
        """Jobs no warm container fitted, run in a cold one."""
        self._changed = threading.Condition()
        self._worker = threading.Thread(target=self._work, name="raas-warm-pool", daemon=True)
        self._worker.start()

    def prepare(
        self,
        slot: str,
        *,
        limits: RunLimits,
        agent_socket: str | Path | None = None,
        python_path: Sequence[Path] = (),
    ) -> None:
        """Keep a container ready for `slot`'s jobs under `limits` (time limit aside), with that agent socket."""
        shape = ContainerShape.for_limits(
            limits, agent_socket=agent_socket, python_path=tuple(python_path), scratch_bytes=self.scratch_bytes
        )
        with self._changed:
            self._set_shape(slot, shape)

    def run(self, request: RunRequest, cancel: threading.Event | None = None, *, slot: str) -> RunOutcome:
        """Run `request` in `slot`'s warm container if one fits, else in a cold one; blocks until it ends."""
        cancel = cancel or threading.Event()
        shape = ContainerShape.of(request, scratch_bytes=self.scratch_bytes)
        container = self._take(slot, shape, request.limits.time_limit_s)
        with self._changed:
            self.warm_runs += container is not None
            self.cold_runs += container is None
        if container is None:
            return run_in_container(request, cancel, self.image, owner=self.owner, scratch_bytes=self.scratch_bytes)
        try:
            return run_started(container, request, cancel, start=time.monotonic(), hard_stop=True)
        finally:
            self._discard(container)
            shutil.rmtree(request.scratch_dir, ignore_errors=True)

    def ready(self, slot: str) -> bool:
        """Whether `slot` has a container waiting."""
        with self._changed:
            return slot in self._warm

    def wait_ready(self, slot: str, timeout_s: float) -> bool:
        """Wait until `slot` has a container waiting; False after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while slot not in self._warm and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return slot in self._warm

    def close(self) -> None:
        """Stop warming and remove every container waiting or pending removal (runs still going remove their own)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._worker.join()
        with self._changed:
            leftovers = [*self._warm.values(), *self._to_discard]
            self._warm.clear()
            self._to_discard.clear()
        for container in leftovers:
            discard(container)

    def __enter__(self) -> ContainerPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the caller's side ------------------------------------------------------------------

    def _take(self, slot: str, shape: ContainerShape, time_limit_s: float) -> StartedContainer | None:
        with self._changed:
            if self._closed:
                return None
            if slot not in self._shapes:
                self._set_shape(slot, shape)
            container = self._warm.pop(slot, None)
            self._changed.notify_all()  # the slot needs a new container either way
            if container is None or container.fits(shape, time_limit_s):
                return container
            self._to_discard.append(container)
            return None

    def _set_shape(self, slot: str, shape: ContainerShape) -> None:
        if self._shapes.get(slot) == shape:
            return
        self._shapes[slot] = shape
        self._retry_at.pop(slot, None)
        stale = self._warm.pop(slot, None)
        if stale is not None:
            self._to_discard.append(stale)
        self._changed.notify_all()

    def _discard(self, container: StartedContainer) -> None:
        with self._changed:
            if not self._closed:
                self._to_discard.append(container)
                self._changed.notify_all()
                return
        discard(container)

    # -- the worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._changed:
                task = None
                while not self._closed:
                    task = self._next_task()
                    if task is not None:
                        break
                    self._changed.wait(_LOOK_INTERVAL_S)
                if self._closed:
                    return
            if isinstance(task, StartedContainer):
                discard(task)
            elif task is not None:
                self._fill(*task)

    def _next_task(self) -> tuple[str, ContainerShape] | StartedContainer | None:
        """The next thing to do (under the lock): a slot to fill, else a container to remove."""
        now = time.monotonic()
        for slot, container in list(self._warm.items()):
            if container.process.poll() is not None or now - container.started_at > self.max_idle_s:
                self._to_discard.append(self._warm.pop(slot))  # dead, or idle too long: replaced
        for slot, shape in self._shapes.items():
            if slot not in self._warm and self._retry_at.get(slot, 0.0) <= now:
                return slot, shape
        return self._to_discard.pop(0) if self._to_discard else None

    def _fill(self, slot: str, shape: ContainerShape) -> None:
        try:
            check_podman(self.image)
            container = start_container(
                self.image,
                shape,
                owner=self.owner,
                timeout_s=self.container_timeout_s,
                start_timeout_s=self.start_timeout_s,
            )
        except (ContainerLaunchError, OSError) as error:
            log.warning("no warm container for %s (its jobs start cold meanwhile): %s", slot, error)
            with self._changed:
                self._retry_at[slot] = time.monotonic() + RETRY_AFTER_FAILURE_S
            return
        with self._changed:
            if self._closed or self._shapes.get(slot) != shape or slot in self._warm:
                self._to_discard.append(container)  # close() removes it if closed
            else:
                self._warm[slot] = container
            self._changed.notify_all()
