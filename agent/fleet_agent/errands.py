"""Slow work of the device threads (portal calls of renewal and recovery) on one helper thread.

A device thread also drives its MQTT session, so an HTTP call that waits for a slow or
unreachable portal there would stop its heartbeats and MQTT keepalive. The device hands such
a call to the agent's ``Errands`` instead and goes on pumping; the outcome comes back through
the device's wake-up pipe and is applied on the device thread, which alone touches paho.

The helper thread exists only while there is work: it ends once its queue is empty, so an
idle agent keeps one thread per device plus its own loop.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("fleet_agent")


@dataclass
class Errand:
    """One job and, once ``done``, its result or the exception it raised."""

    job: Callable[[], Any]
    on_done: Callable[[], None]
    done: bool = False
    result: Any = None
    error: BaseException | None = None

    def outcome(self) -> Any:
        """The job's result; re-raises its exception on the caller's thread."""
        if self.error is not None:
            raise self.error
        return self.result


class Errands:
    """A first-in first-out queue of jobs run by at most one thread, started on demand."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: collections.deque[Errand] = collections.deque()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], Any], on_done: Callable[[], None]) -> Errand:
        """Queue ``job``; ``on_done`` is called on the helper thread once it finished."""
        errand = Errand(job=job, on_done=on_done)
        with self._lock:
            self._jobs.append(errand)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        return errand

    def busy(self) -> bool:
        with self._lock:
            return self._thread is not None

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the queued jobs to finish (at shutdown)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._thread = None
                    return
                errand = self._jobs.popleft()
            try:
                errand.result = errand.job()
            except Exception as exc:  # noqa: BLE001 - handed to the device thread
                errand.error = exc
            errand.done = True
            try:
                errand.on_done()
            except Exception:  # noqa: BLE001 - a wake-up must not end the helper
                log.exception("errand wake-up failed")
