"""How the MQTT front decides a connection after CONNECT, as AWS IoT's gateway does: a
certificate registered ACTIVE passes when its policies allow iot:Connect for the client id;
an unknown one chained to an ACTIVE CA with auto-registration on is provisioned just in time
(registered PENDING_ACTIVATION, template applied) and dropped; anything else is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from moto.core.exceptions import JsonRESTError
from moto.iot.models import FakeCertificate, IoTBackend

from . import iot_state as ix
from . import mqtt_codec as m
from .provisioning import (
    TemplateError,
    apply_template,
    certificate_parameters,
    policy_allows,
    principal_policy_documents,
)


class TokenBucket:
    """AWS throttles JITP registrations (10/s by default); rate 0 disables the limit."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = max(rate, 1.0)
        self.stamp = clock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        if self.rate <= 0:
            return True
        now = self.clock()
        self.tokens = min(max(self.rate, 1.0), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Decision:
    """What to do with a connection after CONNECT."""

    action: str  # "pass", "drop" (JITP done), "refuse"
    reason: str
    backend: IoTBackend | None = None
    certificate: FakeCertificate | None = None
    policy_docs: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    events: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class FrontStats:
    """Counters, for tests and the benchmark."""

    connections: int = 0
    jitp_registrations: int = 0
    jitp_failures: int = 0
    refused: int = 0
    passed: int = 0
    throttled: int = 0
    fleet_certificates: int = 0
    fleet_provisioned: int = 0
    closed_by_status: int = 0


class ConnectAuthorizer:
    """The decision for one connection; JITP registrations are paced by ``bucket``."""

    def __init__(
        self, bucket: TokenBucket, stats: FrontStats, parse: Callable[[str], x509.Certificate]
    ) -> None:
        self.bucket = bucket
        self.stats = stats
        self.parse = parse

    def _candidates(self, sni: str | None) -> tuple[list[tuple[str, str, IoTBackend]], bool]:
        """Backends a connection may belong to, and whether SNI named an endpoint."""
        backends = ix.iter_backends()
        if sni and sni.endswith(".amazonaws.com"):
            named = []
            for acct, region, b in backends:
                ats = ix.data_endpoint(acct, region)
                if sni in (ats, ats.replace("-ats.", ".", 1)):
                    named.append((acct, region, b))
            return named, True
        return backends, False

    def authorize(self, leaf: x509.Certificate, sni: str | None, conn: m.Connect) -> Decision:
        fp = ix.fingerprint(leaf)
        backends, sni_named = self._candidates(sni)
        if sni_named and not backends:
            return Decision("refuse", f"SNI {sni} is not a data endpoint of this stand-in")
        now = dt.datetime.now(dt.UTC)
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            return Decision("refuse", "certificate expired or not yet valid")
        for acct, region, b in backends:
            cert = b.certificates.get(fp)
            if cert is not None:
                return self._authorize_registered(acct, region, b, cert, conn)
        for _acct, _region, b in backends:
            for ca in list(b.ca_certificates.values()):
                ca_x = self.parse(ca.certificate_pem)
                if not ix.signed_by(leaf, ca_x):
                    continue
                if getattr(ca, "certificate_mode", "DEFAULT") == "SNI_ONLY" and not sni_named:
                    continue
                return self._jitp(b, ca, leaf)
        return Decision("refuse", "certificate is not registered and no registered CA signed it")

    def _authorize_registered(
        self, acct: str, region: str, b: IoTBackend, cert: FakeCertificate, conn: m.Connect
    ) -> Decision:
        if cert.status != "ACTIVE":
            return Decision("refuse", f"certificate is {cert.status}", b, cert)
        ca_id = getattr(cert, "ca_certificate_id", None)
        if ca_id and ca_id in b.ca_certificates and b.ca_certificates[ca_id].status == "REVOKED":
            return Decision("refuse", "the certificate's CA is REVOKED", b, cert)
        docs = principal_policy_documents(b, cert.arn)
        variables = {"iot:ClientId": conn.client_id}
        if (cert.arn, conn.client_id) in b.principal_things:
            variables["iot:Connection.Thing.ThingName"] = conn.client_id
            variables["iot:Connection.Thing.IsAttached"] = "true"
        resource = f"arn:aws:iot:{region}:{acct}:client/{conn.client_id}"
        if not policy_allows(docs, "iot:Connect", resource, variables):
            return Decision(
                "refuse", f"iot:Connect not allowed for client id {conn.client_id!r}", b, cert
            )
        return Decision("pass", "authorized", b, cert, docs, variables)

    def _jitp(self, b: IoTBackend, ca: Any, leaf: x509.Certificate) -> Decision:
        if ca.status != "ACTIVE":
            return Decision("refuse", f"CA {ca.certificate_id[:12]} is {ca.status}")
        if getattr(ca, "auto_registration_status", "DISABLE") != "ENABLE":
            return Decision("refuse", "CA has auto-registration disabled")
        if not self.bucket.take():
            self.stats.throttled += 1
            return Decision("refuse", "JITP throttled (--jitp-rate)")
        pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
        cert = b.register_certificate(
            certificate_pem=pem,
            ca_certificate_pem=ca.certificate_pem,
            set_as_active=False,
            status="PENDING_ACTIVATION",
        )
        self.stats.jitp_registrations += 1
        config = ca.registration_config or {}
        body = config.get("templateBody")
        if config.get("templateName"):
            tpl = ix.ext(b).templates.get(config["templateName"])
            if tpl is None or not tpl.enabled:
                self.stats.jitp_failures += 1
                return Decision(
                    "drop", f"JITP template {config['templateName']} missing or disabled"
                )
            body = tpl.body
        if not body:
            event = {
                "certificateId": cert.certificate_id,
                "caCertificateId": ca.certificate_id,
                "timestamp": int(time.time()),
                "certificateStatus": "PENDING_ACTIVATION",
                "awsAccountId": b.account_id,
                "certificateRegistrationTimestamp": str(int(time.time() * 1000)),
            }
            return Decision(
                "drop",
                "registered PENDING_ACTIVATION (no template: JITR event published)",
                events=[
                    (
                        f"$aws/events/certificates/registered/{ca.certificate_id}",
                        json.dumps(event).encode(),
                    )
                ],
            )
        try:
            result = apply_template(
                b, body, certificate_parameters(leaf, cert.certificate_id), cert
            )
        except (TemplateError, JsonRESTError) as exc:
            self.stats.jitp_failures += 1
            msg = exc.message if isinstance(exc, JsonRESTError) else str(exc)
            return Decision("drop", f"JITP failed, certificate stays PENDING_ACTIVATION: {msg}")
        return Decision("drop", f"JITP provisioned thing {result['thingName']}")
