"""Onboarding of one device: a CSR through the portal (waiting for staff) or a claim.

A first request that staff reject, or that fails, is not polled for ever: the device makes
a fresh key and sends a new request after a growing pause (the recovery path), unless the
agent only onboards once (``--once``), where the rejection is the answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleet_agent.claim import provision_by_claim
from fleet_agent.config import parse_connect_host
from fleet_agent.device_base import DeviceBase, DeviceError, log
from fleet_agent.fsutil import remove_quietly
from fleet_agent.keys import build_csr, cert_info, cert_info_from_state
from fleet_agent.mqtt_link import Backoff
from fleet_agent.portal_client import PortalAuthError, PortalError, PortalUnreachable


class OnboardingMixin(DeviceBase):
    """Get the device its first certificate."""

    def _ensure_onboarded(self) -> bool:
        entry = self.agent.state.device(self.cfg.name)
        if entry.get("completed"):
            for key in ("cert_path", "key_path"):
                if not Path(entry[key]).exists():
                    raise DeviceError(
                        f"the {key.split('_')[0]} file {entry[key]} is missing although the "
                        f"device is onboarded; run `fleet-agent reset --device {self.cfg.name}`."
                    )
            if self._cert is None:
                self._cert = cert_info_from_state(entry) or cert_info(
                    Path(entry["cert_path"]).read_bytes()
                )
            return True
        if self.cfg.claim is not None:
            return self._onboard_by_claim(entry)
        if self.agent.portal is None:
            raise DeviceError("no portal and no claim configuration: cannot onboard.")
        return self._onboard_via_portal(entry)

    def _onboard_via_portal(self, entry: dict[str, Any]) -> bool:
        name = self.cfg.name
        generation = int(entry.get("generation", 1))
        key_path = entry.get("key_path") or str(self.dev_dir / f"key-{generation}.pem")
        request_id = entry.get("request_id")
        # Record the intent before creating the key: a crash then leaves a key we reuse.
        self.agent.state.update_device(
            name, key_path=key_path, generation=generation, provisioning="portal"
        )
        self._set_status("onboarding" if request_id is None else "awaiting_approval")
        key = self._load_or_create_key(key_path, may_create=request_id is None)
        unreachable = Backoff(minimum=1.0, maximum=self.opts.portal_retry_max)
        poll_delay = 1.0
        portal = self.agent.portal
        assert portal is not None
        while not self._stop_event.is_set():
            if self._apply_new_config():
                pass  # endpoint changes only matter once connected
            try:
                if request_id is None:
                    resp = portal.submit_request(
                        device=name,
                        csr=build_csr(key, self._csr_common_name()),
                        comment=self.cfg.comment,
                        renewal=False,
                    )
                    request_id = resp["id"]
                    self.agent.state.update_device(name, request_id=request_id)
                    log.info("device %s: onboarding request %s submitted", name, request_id)
                    self._set_status("awaiting_approval")
                resp = portal.get_request(request_id)
            except PortalUnreachable:
                delay = unreachable.next_delay()
                log.warning("portal unreachable at %s, retrying in %.0f s", portal.base_url, delay)
                self._stop_event.wait(delay)
                continue
            except PortalAuthError:
                raise
            except PortalError as exc:
                if exc.status == 404 and request_id is not None:
                    log.warning(
                        "device %s: request %s vanished; submitting again", name, request_id
                    )
                    request_id = None
                    self.agent.state.update_device(name, request_id=None)
                    continue
                raise DeviceError(
                    f"the portal refused the onboarding request: {exc.detail}"
                ) from None
            unreachable.reset()
            status = resp.get("status")
            if status == "issued":
                files = self._install_certificate(
                    key=key,
                    cert_pem=resp.get("certificate") or "",
                    chain=list(resp.get("chain") or []),
                    generation=generation,
                )
                assert self._cert is not None
                self.agent.state.update_device(
                    name,
                    completed=True,
                    thing_name=self._cert.common_name,
                    recovery=None,
                    cert_renew_after=resp.get("renew_after"),
                    **files,
                )
                self._recovery_backoff.reset()
                log.info("device %s: certificate issued for %s", name, self._cert.common_name)
                self._set_status("certificate_issued")
                return True
            if status in ("rejected", "failed"):
                reason = resp.get("reason") or "no reason given"
                sentence = f"onboarding request {request_id} was {status}: {reason}"
                if self.onboard_only:
                    raise DeviceError(sentence)
                generation, key_path = self._onboarding_recover(sentence, generation, key_path)
                key = self._load_or_create_key(key_path, may_create=True)
                request_id = None
                poll_delay = 1.0
                continue
            self._set_status("awaiting_approval")
            self._stop_event.wait(poll_delay)
            poll_delay = min(poll_delay * 2, self.opts.request_poll_max)
        return False

    def _onboarding_recover(self, sentence: str, generation: int, key_path: str) -> tuple[int, str]:
        """A first request was refused: pause, then a fresh key for a new request."""
        pause = self._recovery_backoff.next_delay()
        log.warning(
            "device %s: %s; recovery: a new key and a new onboarding request in %.0f s",
            self.cfg.name,
            sentence,
            pause,
        )
        remove_quietly(key_path)
        generation += 1
        key_path = str(self.dev_dir / f"key-{generation}.pem")
        self.agent.state.update_device(
            self.cfg.name,
            request_id=None,
            key_path=key_path,
            generation=generation,
            recovery=sentence,
        )
        self._set_status("error", f"{sentence}; a new request follows")
        self._stop_event.wait(pause)
        return generation, key_path

    def _onboard_by_claim(self, entry: dict[str, Any]) -> bool:
        name = self.cfg.name
        claim = self.cfg.claim
        assert claim is not None
        generation = int(entry.get("generation", 1))
        key_path = entry.get("key_path") or str(self.dev_dir / f"key-{generation}.pem")
        self.agent.state.update_device(
            name, key_path=key_path, generation=generation, provisioning="claim", completed_fp=False
        )
        self._set_status("onboarding")
        key = self._load_or_create_key(key_path, may_create=True)
        addr = parse_connect_host(self.opts.connect_host, self.cfg.port)
        result = provision_by_claim(
            claim=claim,
            csr_pem=build_csr(key, self._csr_common_name()),
            endpoint=self.cfg.endpoint,
            port=self.cfg.port,
            client_id=claim.client_id or f"claim-{self._csr_common_name()}",
            ca_file=self.opts.broker_ca,
            connect_addr=addr,
            stop=self._stop_event,
        )
        files = self._install_certificate(
            key=key, cert_pem=result.certificate_pem, chain=[], generation=generation
        )
        self.agent.state.update_device(
            name,
            completed=True,
            completed_fp=True,
            thing_name=result.thing_name,
            certificate_id=result.certificate_id,
            device_configuration=result.device_configuration,
            **files,
        )
        log.info("device %s: provisioned by claim as %s", name, result.thing_name)
        self._set_status("certificate_issued")
        return True
