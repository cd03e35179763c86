"""Renewal of a device's certificate, and the recovery path when renewing cannot work.

Renewal: at the renewal point (the portal's ``renew_after``, else two thirds into the
lifetime) the device makes a new key and sends a renewal request carrying a proof of
possession: a signature by its *current* key (docs/agent-protocol.md). Recovery: when the
certificate has expired or was revoked (the portal's configuration says so, or it refuses
the renewal with ``certificate_revoked``), a renewal was rejected or failed, or the portal
refuses renewing for good, the device makes a fresh key and sends a normal onboarding request
(``renewal: false``) that staff must approve; never an automatic renewal. Either way the
old certificate stays in use until the new one is issued, and ``status`` says what the
device waits for. The portal calls of a step run on the agent's helper thread
(fleet_agent.errands); their outcome is applied on the device thread.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from fleet_agent.config import parse_iso
from fleet_agent.device_base import DeviceBase, DeviceError, iso, log, utcnow
from fleet_agent.errands import Errand
from fleet_agent.fsutil import remove_quietly
from fleet_agent.keys import KeyFileError, build_csr, load_private_key, renewal_proof
from fleet_agent.portal_client import PortalAuthError, PortalError, PortalUnreachable
from fleet_agent.renewal_point import renewal_point, same_serial

RENEWAL = "renewal"
RECOVERY = "recovery"
REVOKED = "certificate_revoked"
#: Refusals of a renewal that mean renewing cannot work for this certificate: recover.
RECOVER_ON = {"certificate_expired", "renewal_without_certificate", "proof_invalid", REVOKED}


class RenewalMixin(DeviceBase):
    """Replace the device's certificate before it expires, or recover once it has."""

    def renew_due_at(self) -> dt.datetime | None:
        """When this certificate should be renewed (portal's renew_after, else 2/3 life)."""
        if self._cert is None:
            return None
        entry = self.agent.state.device(self.cfg.name)
        return renewal_point(
            serial=self._cert.serial_hex,
            not_before=self._cert.not_before,
            default=self._cert.default_renew_at(),
            config_renew_after=self.cfg.renew_after,
            config_serial=self.cfg.certificate_serial,
            issued_renew_after=parse_iso(entry.get("cert_renew_after")),
            issued_serial=entry.get("cert_serial"),
            predecessor_renew_after=parse_iso(entry.get("predecessor_renew_after")),
        )

    def _renewal_tick(self) -> None:
        portal = self.agent.portal
        if portal is None or self._cert is None:
            return
        if self._renew_job is not None:
            errand, submitted = self._renew_job
            if errand.done:
                self._renew_job = None
                self._renewal_outcome(errand, submitted)
            return
        now = time.monotonic()
        if now < self._renew_check_at:
            return
        self._renew_check_at = now + 1.0
        pending = self.agent.state.device(self.cfg.name).get("pending_renewal")
        revoked = self._revoked_in_portal()
        if revoked and pending and pending.get("mode", RENEWAL) == RENEWAL:
            pending = self._recover_instead(pending, revoked)
            self._reconnect_requested = True
        if not pending:
            if now < self._renew_not_before:
                return
            if revoked:
                pending = self._replacement_start(RECOVERY, revoked)
                self._reconnect_requested = True  # off the revoked certificate until recovered
            elif utcnow() >= self._cert.not_after:
                why = f"the certificate expired at {iso(self._cert.not_after)}"
                pending = self._replacement_start(RECOVERY, why)
            else:
                due = self.renew_due_at()
                if due is None or utcnow() < due:
                    return
                pending = self._replacement_start(RENEWAL, f"the certificate is due ({iso(due)})")
        if now < self._renew_next_poll:
            return
        # The portal may be slow or away: its calls run on the agent's helper thread, so
        # this thread keeps pumping MQTT (heartbeats, keepalive) meanwhile.
        errand = self.agent.errands.submit(
            lambda: self._renewal_call(pending), on_done=self._waker.wake
        )
        self._renew_job = (errand, pending)

    def _renewal_outcome(self, errand: Errand, pending: dict[str, Any]) -> None:
        """Act on a finished renewal call (device thread)."""
        portal = self.agent.portal
        assert portal is not None
        try:
            current, key, resp = errand.outcome()
            self._renewal_apply(current, key, resp)
        except PortalUnreachable:
            delay = self._next_renew_delay()
            self._renew_next_poll = time.monotonic() + delay
            log.warning("portal unreachable at %s, retrying in %.0f s", portal.base_url, delay)
        except PortalAuthError:
            raise
        except PortalError as exc:
            if pending.get("mode", RENEWAL) == RENEWAL and exc.code in RECOVER_ON:
                why = f"the portal refused the renewal: {exc.detail}"
                if exc.code == REVOKED:
                    why = f"the certificate was revoked ({why})"
                self._recover_instead(pending, why)
            else:
                self._abandon_renewal(pending, f"the portal refused the request: {exc.detail}")
        except (DeviceError, KeyFileError) as exc:
            self._abandon_renewal(pending, f"certificate replacement failed: {exc}")

    def _replacement_start(self, mode: str, why: str) -> dict[str, Any]:
        """Record a renewal or recovery in the state file before any key is made."""
        entry = self.agent.state.device(self.cfg.name)
        generation = int(entry.get("generation", 1)) + 1
        pending = {
            "generation": generation,
            "key_path": str(self.dev_dir / f"key-{generation}.pem"),
            "started": iso(utcnow()),
            "mode": mode,
            "why": why,
            # The configuration's point for the certificate being replaced; it may still
            # be configured after the install, until the next poll.
            "renew_after": iso(self.cfg.renew_after),
        }
        self.agent.state.update_device(self.cfg.name, pending_renewal=pending)
        if mode == RECOVERY:
            log.warning(
                "device %s: %s; recovery: a new key and an onboarding request that staff "
                "must approve",
                self.cfg.name,
                why,
            )
        else:
            log.info("device %s: %s; renewing the certificate", self.cfg.name, why)
        self._renew_next_poll = 0.0
        self._renew_poll_delay = 1.0
        self.agent.notify_change()
        return pending

    def _recover_instead(self, pending: dict[str, Any], why: str) -> dict[str, Any]:
        remove_quietly(pending.get("key_path"))
        self.agent.state.update_device(self.cfg.name, pending_renewal=None)
        return self._replacement_start(RECOVERY, why)

    def _revoked_in_portal(self) -> str | None:
        """Why to recover when the configuration says the held certificate is revoked."""
        cfg = self.cfg
        if self._cert is None or cfg.certificate_status != "revoked":
            return None
        if not same_serial(cfg.certificate_serial, self._cert.serial_hex):
            return None  # the status of another certificate (the one recovery replaced)
        return f"the portal reports the certificate (serial {self._cert.serial_hex}) revoked"

    def _next_renew_delay(self) -> float:
        delay = self._renew_poll_delay
        self._renew_poll_delay = min(self._renew_poll_delay * 2, self.opts.request_poll_max)
        return delay

    def _abandon_renewal(self, pending: dict[str, Any], why: str) -> None:
        recovery = pending.get("mode") == RECOVERY
        pause = self._recovery_backoff.next_delay() if recovery else self.opts.renewal_retry
        self.last_error = why
        log.error("device %s: %s; trying again in %.0f s", self.cfg.name, why, pause)
        self.agent.state.update_device(self.cfg.name, pending_renewal=None)
        remove_quietly(pending.get("key_path"))
        self._renew_not_before = time.monotonic() + pause
        self.agent.notify_change()

    def _renewal_call(self, pending: dict[str, Any]) -> tuple[dict[str, Any], Any, dict[str, Any]]:
        """The portal side of one renewal step (helper thread; never touches paho): the key,
        the request sent once, its current answer."""
        portal = self.agent.portal
        assert portal is not None
        name = self.cfg.name
        mode = pending.get("mode", RENEWAL)
        key = self._load_or_create_key(
            pending["key_path"], may_create=pending.get("request_id") is None
        )
        if pending.get("request_id") is None:
            csr = build_csr(key, self._csr_common_name())
            resp = portal.submit_request(
                device=name,
                csr=csr,
                comment=self.cfg.comment,
                renewal=mode == RENEWAL,
                proof=self._proof_for(csr) if mode == RENEWAL else None,
            )
            pending = {**pending, "request_id": resp["id"]}
            self.agent.state.update_device(name, pending_renewal=pending)
            if mode == RECOVERY:
                log.info(
                    "device %s: recovery request %s submitted; waiting for staff to approve it",
                    name,
                    resp["id"],
                )
            else:
                log.info("device %s: renewal request %s submitted", name, resp["id"])
            self.agent.notify_change()
        return pending, key, portal.get_request(pending["request_id"])

    def _renewal_apply(self, pending: dict[str, Any], key: Any, resp: dict[str, Any]) -> None:
        """Install an issued certificate, recover from a refusal, or poll again later."""
        mode = pending.get("mode", RENEWAL)
        status = resp.get("status")
        if status == "issued":
            self._replacement_install(pending, key, resp)
            return
        if status in ("rejected", "failed"):
            reason = resp.get("reason") or "no reason given"
            if mode == RENEWAL:
                why = f"renewal request {pending['request_id']} was {status} ({reason})"
                self._recover_instead(pending, why)
                return
            raise DeviceError(f"recovery request {pending['request_id']} was {status}: {reason}")
        if mode == RECOVERY and not self.connected and self.status != "awaiting_approval":
            self._set_status("awaiting_approval")  # offline until staff approve the new key
        self._renew_next_poll = time.monotonic() + self._next_renew_delay()

    def _proof_for(self, csr_pem: str) -> dict[str, Any]:
        """Sign the renewal with the key of the certificate in use (proof of possession)."""
        entry = self.agent.state.device(self.cfg.name)
        current = load_private_key(entry["key_path"], self.cfg.key_password)
        return renewal_proof(
            current, station=self.station, device=self.cfg.name, csr_pem=csr_pem, now=time.time()
        )

    def _replacement_install(self, pending: dict[str, Any], key: Any, resp: dict[str, Any]) -> None:
        name = self.cfg.name
        entry = self.agent.state.device(name)
        files = self._install_certificate(
            key=key,
            cert_pem=resp.get("certificate") or "",
            chain=list(resp.get("chain") or []),
            generation=int(pending["generation"]),
        )
        retired = {
            k: entry[k]
            for k in ("key_path", "cert_path", "chain_path", "fullchain_path")
            if entry.get(k)
        }
        assert self._cert is not None
        self.agent.state.update_device(
            name,
            key_path=pending["key_path"],
            request_id=pending["request_id"],
            thing_name=self._cert.common_name,
            pending_renewal=None,
            retired=retired,
            renewed_at=iso(utcnow()),
            # The new certificate's own renewal point (not the configuration's, which may
            # still be the predecessor's until the next poll).
            cert_renew_after=resp.get("renew_after"),
            predecessor_renew_after=pending.get("renew_after"),
            **files,
        )
        log.info(
            "device %s: new certificate installed (expires %s); reconnecting",
            name,
            iso(self._cert.not_after),
        )
        self._renew_poll_delay = 1.0
        self._recovery_backoff.reset()
        self.last_error = None
        self._reconnect_requested = True
        self.agent.notify_change()
