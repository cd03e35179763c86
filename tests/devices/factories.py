"""Plain factory functions for station / device / fleet-install tests (no fixtures, no magic)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from devices.models import MqttDevice, Station
from devices.services import station_create
from signing.models import CertificateAuthority, SigningProfile
from signing.services import ca_generate

CA_PASSWORD = "ca-password-123"
DEVICE_PASSWORD = "device-secret-pw-42"


def make_station(name: str, *, online: bool = False, **fields: Any) -> tuple[Station, str]:
    station, token = station_create(name=name)
    if online:
        fields.setdefault("last_seen_at", timezone.now())
    if fields:
        Station.objects.filter(pk=station.pk).update(**fields)
        station.refresh_from_db()
    return station, token


def make_ca(alias: str = "test-ca") -> CertificateAuthority:
    existing = CertificateAuthority.objects.filter(alias=alias).first()
    return existing or ca_generate(
        alias=alias, dn="CN=Test CA,O=Tests,C=DE", password=CA_PASSWORD, days=30
    )


def make_profile(name: str = "fleet") -> SigningProfile:
    existing = SigningProfile.objects.filter(name=name).first()
    if existing:
        return existing
    profile = SigningProfile(name=name, ca=make_ca(), country="DE", organization="Tests")
    profile.ca_password = CA_PASSWORD
    profile.full_clean()
    profile.save()
    return profile


def make_device(station: Station, name: str = "aws", **fields: Any) -> MqttDevice:
    fields.setdefault("endpoint", "abc123-ats.iot.eu-west-1.amazonaws.com")
    fields.setdefault("signing_profile", make_profile())
    device = MqttDevice(station=station, name=name, **fields)
    device.key_password = fields.get("key_password", DEVICE_PASSWORD)
    device.full_clean()
    device.save()
    return device


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}
