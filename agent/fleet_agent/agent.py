"""The station agent: pulls desired config, runs one worker per device, reports state.

``Agent`` holds no global state and installs no signal handlers, so a benchmark can run
hundreds of them in one process; the CLI adds signals and exit codes around it.

Its length (a little over 400 lines) is the supervisor loop kept in one piece: start, poll,
reconcile devices, report and stop read best in order.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from fleet_agent import __version__
from fleet_agent.config import AgentOptions, ConfigError, DeviceConfig
from fleet_agent.device import DeviceWorker, iso
from fleet_agent.diskqueue import DiskQueue
from fleet_agent.errands import Errands
from fleet_agent.fsutil import (
    StateDirLocked,
    atomic_write,
    lock_state_dir,
    unlock_state_dir,
)
from fleet_agent.mqtt_link import Backoff
from fleet_agent.portal_client import (
    PortalAuthError,
    PortalClient,
    PortalError,
    PortalUnreachable,
    portal_url_problem,
)
from fleet_agent.state import (
    CorruptStateError,
    StateStore,
    desired_cache_load,
    desired_cache_store,
)
from fleet_agent.uplink import PayloadTooLargeError, UnknownDeviceError, UplinkMixin

__all__ = ["Agent", "AgentFatalError", "PayloadTooLargeError", "UnknownDeviceError"]

log = logging.getLogger("fleet_agent")

CommandHandler = Callable[[str, dict[str, Any]], None]


EXIT_TOKEN_REFUSED = 3
EXIT_CORRUPT_STATE = 4


class AgentFatalError(Exception):
    """The agent cannot go on without a person (bad token, corrupt state); one sentence."""

    def __init__(self, sentence: str, exit_code: int = 2) -> None:
        super().__init__(sentence)
        self.exit_code = exit_code


class Agent(UplinkMixin):
    """One station's agent; ``run()`` blocks, ``start()`` runs it on a thread."""

    def __init__(self, options: AgentOptions, *, on_command: CommandHandler | None = None) -> None:
        self.options = options
        self.on_command = on_command
        self.state = StateStore(options.state_dir)
        self.portal: PortalClient | None = None
        if options.portal:
            problem = portal_url_problem(options.portal)
            if problem:
                raise AgentFatalError(problem)
            if not options.token:
                raise AgentFatalError("a station token is required to talk to the portal.")
            self.portal = PortalClient(options.portal, options.token, ca_file=options.portal_ca)
        self.queue: DiskQueue = None  # type: ignore[assignment]  # opened in run()
        self.station: str = options.station or ""
        self.label = options.state_dir.name
        self.workers: dict[str, DeviceWorker] = {}
        # Portal calls of renewals, off the device threads (a thread only while busy).
        self.errands = Errands(name=f"fleet-agent-{self.label}-portal")
        self._config_errors: dict[str, str] = {}
        self._poll_interval = 30.0
        self._etag: str | None = None
        self._run_id = secrets.token_hex(8)
        self._report_sequence = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._changed = threading.Event()
        self._fatal: str | None = None
        self._fatal_code = 2
        self._status_dirty = True
        self._lock_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self.exit_code = 0
        self.reports_sent = 0

    # ------------------------------------------------------------------ public API
    def start(self) -> threading.Thread:
        """Run in a background thread (in-process use, benchmarks, tests)."""
        self._thread = threading.Thread(target=self._run_catching, daemon=True, name="agent")
        self._thread.start()
        self._ready.wait(10)
        return self._thread

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def fatal_error(self) -> str | None:
        return self._fatal

    def notify_change(self) -> None:
        """A device's reported state changed: report to the portal soon."""
        self._changed.set()
        self._status_dirty = True
        self._wake.set()

    def fatal(self, sentence: str, exit_code: int = EXIT_TOKEN_REFUSED) -> None:
        if self._fatal is None:
            self._fatal = sentence
            self._fatal_code = exit_code
        self._stop.set()
        self._wake.set()

    def handle_command(self, device: str, record: dict[str, Any]) -> None:
        if self.on_command is not None:
            try:
                self.on_command(device, record)
            except Exception:  # noqa: BLE001 - a local handler bug must not drop the link
                log.exception("device %s: the command handler failed", device)

    def device_report(self) -> list[dict[str, Any]]:
        with self._lock:
            workers = list(self.workers.values())
        out = [w.report() for w in workers]
        for name, err in self._config_errors.items():
            out.append({"name": name, "status": "error", "connected": False, "last_error": err})
        return out

    def _status_entries(self) -> list[dict[str, Any]]:
        with self._lock:
            workers = list(self.workers.values())
        out = [w.status_entry() for w in workers]
        for name, err in self._config_errors.items():
            out.append(
                {
                    "name": name,
                    "status": "error",
                    "connected": False,
                    "last_error": err,
                    "waiting_for": "a valid configuration of this device in the portal",
                }
            )
        return out

    def all_connected(self) -> bool:
        with self._lock:
            workers = list(self.workers.values())
        return bool(workers) and all(w.ever_connected and w.heartbeats_sent > 0 for w in workers)

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.all_connected():
                return True
            if self._stop.is_set():
                return False
            time.sleep(0.05)
        return False

    # ------------------------------------------------------------------ run loop
    def _run_catching(self) -> None:
        try:
            self.exit_code = self.run()
        except AgentFatalError as exc:
            self._fatal = self._fatal or str(exc)
            self.exit_code = exc.exit_code
        finally:
            self._ready.set()

    def run(self) -> int:
        """Block until stopped; returns an exit code, raises AgentFatalError when stuck."""
        opts = self.options
        try:
            opts.state_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(opts.state_dir, 0o700)
            self._lock_fd = lock_state_dir(opts.state_dir)
            self.state.load()
        except CorruptStateError as exc:
            unlock_state_dir(self._lock_fd)
            raise AgentFatalError(str(exc), EXIT_CORRUPT_STATE) from None
        except StateDirLocked as exc:
            raise AgentFatalError(str(exc)) from None
        except OSError as exc:
            raise AgentFatalError(
                f"the state directory {opts.state_dir} is not usable ({exc.strerror})."
            ) from None
        self.queue = DiskQueue(
            opts.state_dir / "queue.sqlite3",
            max_messages=opts.queue_max_messages,
            max_bytes=opts.queue_max_bytes,
        )
        (opts.state_dir / "outbox").mkdir(exist_ok=True)
        (opts.state_dir / "inbox").mkdir(exist_ok=True)
        self._ready.set()
        try:
            return self._loop()
        finally:
            self._shutdown()

    def _loop(self) -> int:
        opts = self.options
        if self.portal is None:
            self._apply_config(
                {
                    "station": opts.station or "",
                    "poll_interval": opts.poll_interval or 30,
                    "devices": opts.local_devices,
                }
            )
        else:
            cached, self._etag = desired_cache_load(opts.state_dir)
            if cached is not None and opts.cache_secrets:
                # Keep the devices online through a portal outage after a restart.
                self._apply_config(cached)
        portal_backoff = Backoff(minimum=1.0, maximum=opts.portal_retry_max)
        next_poll = 0.0
        next_report = 0.0
        report_retry_at = 0.0
        next_outbox_scan = 0.0
        next_status_write = 0.0
        deadline = time.monotonic() + opts.timeout if opts.timeout else None
        have_config = self.portal is None
        while not self._stop.is_set():
            now = time.monotonic()
            if self.portal is not None and now >= next_poll:
                try:
                    cfg, etag = self.portal.get_config(self._etag)
                    portal_backoff.reset()
                    have_config = True
                    if cfg is not None:
                        self._etag = etag
                        desired_cache_store(
                            opts.state_dir, cfg, etag, with_secrets=opts.cache_secrets
                        )
                        self._apply_config(cfg)
                    next_poll = now + self._poll_interval
                except PortalAuthError as exc:
                    self.fatal(
                        f"the portal rejected the station token ({exc.status}); check --token-file."
                    )
                    break
                except PortalUnreachable:
                    delay = portal_backoff.next_delay()
                    log.warning(
                        "portal unreachable at %s, retrying in %.0f s", self.portal.base_url, delay
                    )
                    next_poll = now + delay
                except PortalError as exc:
                    log.error("the portal refused the configuration request: %s", exc.detail)
                    next_poll = now + self._poll_interval
            if (
                self.portal is not None
                and have_config
                and (self._changed.is_set() or now >= next_report)
                and now >= report_retry_at
            ):
                self._changed.clear()
                try:
                    self.portal.post_state(self.state_report())
                    self.reports_sent += 1
                    next_report = now + self._poll_interval
                except PortalAuthError as exc:
                    self.fatal(
                        f"the portal rejected the station token ({exc.status}); check --token-file."
                    )
                    break
                except PortalUnreachable:
                    self._changed.set()
                    report_retry_at = now + min(self._poll_interval, 5.0)
                except PortalError as exc:
                    log.error("the portal refused the state report: %s", exc.detail)
                    next_report = now + self._poll_interval
            if self._status_dirty or now >= next_status_write:
                self._status_dirty = False
                next_status_write = now + self._poll_interval
                self._write_status_file()
            if now >= next_outbox_scan:
                next_outbox_scan = now + 1.0
                self._ingest_outbox()
            if opts.once and have_config and self._onboarding_finished():
                return 0 if self._onboarding_ok() else 1
            if opts.exit_when_connected and self.all_connected():
                self._final_report()
                return 0
            if deadline is not None and time.monotonic() > deadline:
                log.error("gave up after %.0f s without reaching the goal.", opts.timeout)
                return 1
            self._wake.wait(1.0)
            self._wake.clear()
        if self._fatal:
            raise AgentFatalError(self._fatal, self._fatal_code)
        return 0

    def _write_status_file(self) -> None:
        """Live per-device status for `fleet-agent status` (no secrets in it)."""
        body = {
            "updated": iso(dt.datetime.now(dt.UTC)),
            "station": self.station,
            "pid": os.getpid(),
            "devices": self._status_entries(),
        }
        try:
            atomic_write(self.options.state_dir / "status.json", json.dumps(body).encode(), 0o644)
        except OSError as exc:
            log.warning("cannot write status.json (%s)", exc.strerror)

    def _onboarding_finished(self) -> bool:
        with self._lock:
            workers = list(self.workers.values())
        return all(w.onboarding_done for w in workers)

    def _onboarding_ok(self) -> bool:
        with self._lock:
            workers = list(self.workers.values())
        return not self._config_errors and all(w.status != "error" for w in workers)

    def state_report(self) -> dict[str, Any]:
        """The body of POST /agent/state, numbered: the portal ignores a report that arrives
        after a newer one of the same run (one this agent stopped waiting for)."""
        with self._lock:
            self._report_sequence += 1
            sequence = self._report_sequence
        return {
            "agent_version": __version__,
            "run": self._run_id,
            "sequence": sequence,
            "devices": self.device_report(),
        }

    def _final_report(self) -> None:
        if self.portal is None:
            return
        with contextlib.suppress(PortalError, PortalUnreachable):
            self.portal.post_state(self.state_report())

    def _shutdown(self) -> None:
        with self._lock:
            workers = list(self.workers.values())
        for w in workers:
            w.stop()
        for w in workers:
            w.join(10)
        self.errands.join(15)  # a renewal step in flight records its request id
        if self.queue is not None and workers:
            self._write_status_file()
        if self.queue is not None:
            self.queue.close()
        if self.portal is not None:
            self.portal.close()
        unlock_state_dir(self._lock_fd)
        self._lock_fd = None

    # ------------------------------------------------------------------ desired config
    def _apply_config(self, cfg: dict[str, Any]) -> None:
        """Start, update or stop device workers to match the desired configuration."""
        station = cfg.get("station")
        if isinstance(station, str) and station:
            self.station = station
            self.state.set_meta(station=station)
        if self.options.poll_interval:
            self._poll_interval = float(self.options.poll_interval)
        else:
            try:
                self._poll_interval = max(1.0, float(cfg.get("poll_interval") or 30))
            except (TypeError, ValueError):
                self._poll_interval = 30.0
        wanted: dict[str, DeviceConfig] = {}
        errors: dict[str, str] = {}
        entries = cfg.get("devices") or []
        if not isinstance(entries, list):
            entries = []
            log.error("the desired configuration's 'devices' is not a list; ignored.")
        for raw in entries:
            try:
                dc = DeviceConfig.from_dict(self._with_claim_defaults(raw))
            except ConfigError as exc:
                name = raw.get("name") if isinstance(raw, dict) else None
                errors[str(name or "?")] = str(exc)
                log.error("invalid device configuration: %s", exc)
                continue
            wanted[dc.name] = dc
        with self._lock:
            self._config_errors = errors
            for name in list(self.workers):
                if name not in wanted:
                    log.info("device %s removed from the configuration; stopping it", name)
                    self.workers.pop(name).stop()
            for name, dc in wanted.items():
                existing = self.workers.get(name)
                if existing is None:
                    worker = DeviceWorker(self, dc, onboard_only=self.options.once)
                    self.workers[name] = worker
                    worker.start()
                else:
                    existing.update_config(dc)
        self.notify_change()

    def _with_claim_defaults(self, raw: Any) -> Any:
        claim = self.options.claim
        if not claim or not isinstance(raw, dict) or raw.get("claim"):
            return raw
        return {**raw, "claim": claim}
