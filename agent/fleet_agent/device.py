"""Runtime of one MQTT device on the station: onboard, connect, publish, renew.

One thread per device runs a small event loop: before it has a certificate it onboards
(portal CSR or claim, fleet_agent.onboarding); afterwards it drives the paho client itself
(fleet_agent.session) and, between network events, publishes heartbeats, drains the
store-and-forward queue under the rate limit and checks whether the certificate is due for
renewal or recovery (fleet_agent.renewal), whose portal calls it hands to the agent's
helper thread (fleet_agent.errands) so that a slow portal never stalls the MQTT session.
Keeping paho on one thread per device means no locks around it and a cheap footprint per
device.
"""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt

from fleet_agent.claim import ClaimError
from fleet_agent.device_base import STATUSES, DeviceError, iso, log, utcnow
from fleet_agent.keys import KeyFileError
from fleet_agent.mqtt_link import Backoff
from fleet_agent.onboarding import OnboardingMixin
from fleet_agent.portal_client import PortalAuthError
from fleet_agent.renewal import RenewalMixin
from fleet_agent.session import CONNACK_NOT_AUTHORIZED, SessionMixin, refused_certificate

__all__ = [
    "CONNACK_NOT_AUTHORIZED",
    "STATUSES",
    "DeviceError",
    "DeviceWorker",
    "iso",
    "refused_certificate",
    "utcnow",
]


class DeviceWorker(OnboardingMixin, RenewalMixin, SessionMixin):
    """Owns one device's key material, onboarding, MQTT connection and renewal."""

    def run(self) -> None:
        try:
            self._run()
        finally:
            self._drop_connection()
            self._waker.close()

    def _run(self) -> None:
        retry = Backoff(minimum=1.0, maximum=max(1.0, self.opts.renewal_retry))
        while not self._stop_event.is_set():
            try:
                self._apply_new_config()
                if not self._ensure_onboarded():
                    continue
                self.onboarding_done = True
                self.agent.notify_change()
                if self.onboard_only:
                    return
                retry.reset()
                self._online_loop()
            except PortalAuthError as exc:
                self.agent.fatal(
                    f"the portal rejected the station token ({exc.status}); check --token-file."
                )
                return
            except (DeviceError, KeyFileError, ClaimError) as exc:
                self._set_status("error", str(exc))
                if self.onboard_only and self.status == "error":
                    self.onboarding_done = True
                    self.agent.notify_change()
                    return
                self._stop_event.wait(retry.next_delay())
            except Exception as exc:  # noqa: BLE001 - keep the station alive, report it
                log.exception("device %s: unexpected failure", self.cfg.name)
                self._set_status("error", f"unexpected failure: {type(exc).__name__}.")
                self._stop_event.wait(retry.next_delay())

    def _online_loop(self) -> None:
        self._next_connect = max(time.monotonic(), self._last_attempt + 1.0)
        while not self._stop_event.is_set():
            if self._apply_new_config():
                self._drop_connection()
                self._next_connect = max(time.monotonic(), self._last_attempt + 1.0)
            now = time.monotonic()
            if now >= self._next_state_check:
                self._next_state_check = now + 1.0
                if not self.agent.state.device(self.cfg.name).get("completed"):
                    self._drop_connection()
                    return  # reset underneath us: onboard again
            if self.client is None and now >= self._next_connect:
                if self._cert is not None and (
                    utcnow() >= self._cert.not_after or self._revoked_in_portal()
                ):
                    # An expired or revoked certificate cannot connect: wait for the recovery's.
                    self._next_connect = now + 5.0
                else:
                    self._connect()
            client = self.client
            if client is not None:
                # Short waits only while there is something to send; idle devices sleep in
                # poll() until the next heartbeat (or a wake-up) so many agents fit a process.
                busy = bool(self._inflight) or self._queue_seen != self._queue_puts
                assert self._pump is not None
                idle = min(1.0, max(0.0, self._hb_next - now)) if self._mqtt_ready else 1.0
                rc = self._pump.pump(0.01 if busy else idle)
                if self.client is not client:
                    pass  # a callback already closed this connection
                elif rc != mqtt.MQTT_ERR_SUCCESS:
                    self._connection_lost(f"connection lost ({mqtt.error_string(rc)})")
                elif (
                    self._mqtt_ready
                    and self._conn_backoff.attempt
                    and now - self._connected_at >= self.opts.stable_after
                ):
                    self._conn_backoff.reset()
            else:
                self._waker.wait(min(1.0, max(0.0, self._next_connect - now)))
            if self._mqtt_ready and self.client is not None:
                self._heartbeat_tick()
                self._drain_queue()
            self._renewal_tick()
            if self._reconnect_requested:
                self._reconnect_requested = False
                self._drop_connection()
                self._next_connect = max(time.monotonic(), self._last_attempt + 1.0)
        self._drop_connection()
