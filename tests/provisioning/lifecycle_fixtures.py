"""A small fleet in moto for the lifecycle and audit tests: our CA registered in AWS, the
JITP settings holding the access key, and helpers that onboard, renew and do what JITP
does on a device's connection (register, thing, attach, policy)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.utils import timezone

from devices.models import Station
from devices.services import station_create
from fleet_agent.keys import renewal_proof
from provisioning.jitp import jitp_settings_get
from provisioning.jitp.documents import policy_document_build
from provisioning.lifecycle import aws_actions_run
from provisioning.lifecycle.models import AwsAction
from signing.models import CertificateAuthority, IssuedCertificate
from signing.services import (
    ca_generate,
    onboarding_request_submit,
    onboarding_requests_approve,
    onboarding_requests_sign,
    signing_profile_create,
)
from tests.provisioning.conftest import aws
from tests.signing.conftest import make_ec_csr

CA_PASSWORD = "ca-password-123"
ACCOUNT = "123456789012"
REGION = "eu-west-1"


@dataclass
class Fleet:
    iot: Any
    ca: CertificateAuthority
    ca_id: str
    station: Station
    policy_name: str
    keys: dict[str, Any] = field(default_factory=dict)

    def onboard(self, device: str) -> IssuedCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        request, _ = onboarding_request_submit(
            station=self.station, device_name=device, csr=make_ec_csr(key=key)
        )
        self.keys[device] = key
        onboarding_requests_approve(ids=[request.pk], actor_label="test")
        assert onboarding_requests_sign(ids=[request.pk]).issued == 1
        return IssuedCertificate.objects.get(request=request)

    def renew(self, cert: IssuedCertificate) -> IssuedCertificate:
        IssuedCertificate.objects.filter(pk=cert.pk).update(
            renew_after=timezone.now() - timedelta(seconds=1)
        )
        device = cert.device.name
        key = ec.generate_private_key(ec.SECP256R1())
        csr = make_ec_csr(key=key)
        proof = renewal_proof(
            self.keys[device],
            station=self.station.name,
            device=device,
            csr_pem=csr,
            now=time.time(),
        )
        request, created = onboarding_request_submit(
            station=self.station, device_name=device, csr=csr, renewal=True, proof=proof
        )
        self.keys[device] = key
        assert created
        assert onboarding_requests_sign(ids=[request.pk]).issued == 1
        return IssuedCertificate.objects.get(request=request)

    def jitp(self, cert: IssuedCertificate, *, status: str = "ACTIVE") -> str:
        """What JITP does on the first connection: register under our CA, thing, policy."""
        arn = self.iot.register_certificate(
            certificatePem=cert.certificate_pem,
            caCertificatePem=self.ca.certificate_pem,
            status=status,
        )["certificateArn"]
        if status != "ACTIVE":
            return arn
        try:
            self.iot.create_thing(thingName=cert.common_name)
        except self.iot.exceptions.ResourceAlreadyExistsException:
            pass
        self.iot.attach_thing_principal(thingName=cert.common_name, principal=arn)
        self.iot.attach_policy(policyName=self.policy_name, target=arn)
        return arn

    def status(self, cert: IssuedCertificate) -> str:
        try:
            desc = self.iot.describe_certificate(certificateId=cert.aws_certificate_id)
        except self.iot.exceptions.ResourceNotFoundException:
            return "DELETED"
        return str(desc["certificateDescription"]["status"])

    def things_of(self, cert: IssuedCertificate) -> list[str]:
        arn = self.iot.describe_certificate(certificateId=cert.aws_certificate_id)[
            "certificateDescription"
        ]["certificateArn"]
        return list(self.iot.list_principal_things(principal=arn)["things"])

    def policies_of(self, cert: IssuedCertificate) -> list[str]:
        arn = self.iot.describe_certificate(certificateId=cert.aws_certificate_id)[
            "certificateDescription"
        ]["certificateArn"]
        return [p["policyName"] for p in self.iot.list_attached_policies(target=arn)["policies"]]


def run_outbox() -> None:
    """Carry out every action that is due, again and again, skipping backoff waits."""
    for _ in range(10):
        aws_actions_run(budget_seconds=30)
        waiting = AwsAction.objects.filter(
            status=AwsAction.Status.PENDING, not_before__gt=timezone.now()
        ).exclude(kind=AwsAction.Kind.DELETE, attempts=0)
        if not waiting.exists():
            return
        waiting.update(not_before=timezone.now())


@pytest.fixture
def stand_in_iot(moto_server: str) -> Iterator[str]:
    """moto with the stand-in's IoT extensions (CA listings, certificate modes, …)."""
    from localaws import iot_extensions

    iot_extensions.apply()
    try:
        yield moto_server
    finally:
        iot_extensions.revert()


@pytest.fixture
def fleet(stand_in_iot: str, der_certificate_ids, access_key, settings) -> Fleet:  # noqa: ANN001
    moto_server = stand_in_iot
    settings.AWS_ACTION_RATE = 0  # unpaced in tests
    ca = ca_generate(alias="fleet-ca", dn="CN=Fleet CA,O=Example,C=DE", password=CA_PASSWORD)
    signing_profile_create(
        name="default", ca=ca, ca_password=CA_PASSWORD, country="DE", is_default=True
    )
    row = jitp_settings_get()
    row.access_key = access_key
    row.region = REGION
    row.ca_alias = ca.alias
    row.save()
    iot = aws("iot", moto_server)
    ca_id = iot.register_ca_certificate(
        caCertificate=ca.certificate_pem,
        setAsActive=True,
        allowAutoRegistration=True,
        certificateMode="SNI_ONLY",
    )["certificateId"]
    document = policy_document_build(mode=row.policy_mode, region=REGION, account_id=ACCOUNT)
    policy_name = "JITP-fleet"
    iot.create_policy(policyName=policy_name, policyDocument=json.dumps(document))
    station, _ = station_create(name="st-fleet")
    return Fleet(iot=iot, ca=ca, ca_id=ca_id, station=station, policy_name=policy_name)


def rogue_certificate(fleet: Fleet, cn: str) -> str:
    """A certificate signed by our CA that the portal never issued (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from provisioning.jitp.documents import ca_certificate
    from signing.keystore import get_key_store

    key = ec.generate_private_key(ec.SECP256R1())
    now = timezone.now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_certificate(fleet.ca).subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
    )
    cert = get_key_store().sign(fleet.ca, CA_PASSWORD, builder)
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
