"""A synthetic fleet built with bulk_create (not the services row by row): stations, one
device each, onboarding requests and issued certificates. Used by the cockpit's tests and by
benchmarks/admin_scale.py (10,000 stations / 100,000 certificates)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import OuterRef, Subquery

from devices.models import MqttDevice, Station
from signing.models import (
    CertificateAuthority,
    CommonNameOwner,
    IssuedCertificate,
    OnboardingRequest,
    SigningProfile,
)

FAKE_PEM = "-----BEGIN CERTIFICATE-----\n" + ("A" * 64 + "\n") * 10 + "-----END CERTIFICATE-----\n"
DEVICE_STATUSES = [s for s, _ in MqttDevice.Status.choices]


@dataclass
class Fleet:
    stations: int
    certificates: int
    online: int
    stale: int
    never: int
    devices_by_status: dict[str, int]
    expiring_30d: int
    pending: int
    failed: int


def _request(
    device: MqttDevice, profile: SigningProfile, *, key_seed: str, **fields: object
) -> OnboardingRequest:
    """An onboarding request of ``device`` with a made-up CSR and key fingerprint."""
    return OnboardingRequest(
        station_id=device.station_id,
        device=device,
        profile=profile,
        csr_pem="csr",
        key_type="ec-p256",
        public_key_fingerprint=hashlib.sha256(key_seed.encode()).hexdigest(),
        **fields,
    )


def _hex(value: int, size: int) -> str:
    return value.to_bytes(size, "big").hex(":").upper()


def build_fleet(
    *,
    stations: int,
    certs_per_station: int,
    profile: SigningProfile,
    now: datetime,
    prefix: str = "st",
    batch: int = 2000,
    spacing_days: int = 3,
) -> Fleet:
    """Stations ``<prefix>-00000``…: a third online, a third stale, a third never seen; one
    device ``aws`` each (statuses in turn); ``certs_per_station`` certificates each (the
    last one active, the others superseded, signed ``spacing_days`` apart), expiring over the
    next ~13 months; every 50th
    station also has a pending and a failed request."""
    ca: CertificateAuthority = profile.ca
    rows = []
    for i in range(stations):
        name = f"{prefix}-{i:05d}"
        seen = [now, now - timedelta(hours=2), None][i % 3]
        rows.append(
            Station(
                name=name,
                token_hash=hashlib.sha256(name.encode()).hexdigest(),
                token_prefix=name[:8],
                last_seen_at=seen,
                site=f"site-{i % 20}",
            )
        )
    created = Station.objects.bulk_create(rows, batch_size=batch)
    devices = MqttDevice.objects.bulk_create(
        [
            MqttDevice(
                station=s,
                name="aws",
                status=DEVICE_STATUSES[i % len(DEVICE_STATUSES)],
                signing_profile=profile,
                client_id=f"{s.name}-aws",
                endpoint="abc123-ats.iot.eu-west-1.amazonaws.com",
            )
            for i, s in enumerate(created)
        ],
        batch_size=batch,
    )
    requests: list[OnboardingRequest] = []
    for i, d in enumerate(devices):
        for k in range(certs_per_station):
            requests.append(
                _request(
                    d,
                    profile,
                    key_seed=f"{i}-{k}",
                    is_renewal=k > 0,
                    status=OnboardingRequest.Status.ISSUED,
                    created_at=now
                    - timedelta(days=(certs_per_station - k) * spacing_days, minutes=i % 600),
                    issued_at=now - timedelta(days=(certs_per_station - k) * spacing_days),
                )
            )
        if i % 50 == 0:
            for status in (OnboardingRequest.Status.PENDING, OnboardingRequest.Status.FAILED):
                requests.append(
                    _request(
                        d,
                        profile,
                        key_seed=f"{i}-{status}",
                        status=status,
                        created_at=now - timedelta(hours=1),
                    )
                )
    requests = OnboardingRequest.objects.bulk_create(requests, batch_size=batch)
    certs = []
    expiring = 0
    serial = 10_000_000 + IssuedCertificate.objects.count()
    for req in requests:
        if req.status != OnboardingRequest.Status.ISSUED:
            continue
        serial += 1
        k = len(certs) % certs_per_station
        last = k == certs_per_station - 1
        not_after = now + timedelta(days=(serial % 400) + 1)
        if last and not_after <= now + timedelta(days=30):
            expiring += 1
        cn = req.device.station.name
        certs.append(
            IssuedCertificate(
                device_id=req.device_id,
                request=req,
                profile=profile,
                ca=ca,
                serial=_hex(serial, 8),
                common_name=f"{cn}-aws-{k}",
                subject=f"CN={cn}-aws-{k},C=DE",
                issuer=ca.subject,
                not_before=req.created_at,
                not_after=not_after,
                renew_after=not_after - timedelta(days=120),
                fingerprint_sha256=_hex(
                    int.from_bytes(hashlib.sha256(str(serial).encode()).digest(), "big"), 32
                ),
                certificate_pem=FAKE_PEM,
                status=IssuedCertificate.Status.ACTIVE
                if last
                else IssuedCertificate.Status.SUPERSEDED,
                created_at=req.issued_at or now,
            )
        )
    # Each CN belongs to its device first (on PostgreSQL a foreign key insists on it).
    CommonNameOwner.objects.bulk_create(
        [CommonNameOwner(common_name=c.common_name, device_id=c.device_id) for c in certs],
        batch_size=batch,
    )
    IssuedCertificate.objects.bulk_create(certs, batch_size=batch)
    MqttDevice.objects.filter(station__name__startswith=f"{prefix}-").update(
        current_certificate=Subquery(
            IssuedCertificate.objects.filter(
                device=OuterRef("pk"), status=IssuedCertificate.Status.ACTIVE
            ).values("pk")[:1]
        )
    )
    by_status = dict.fromkeys(DEVICE_STATUSES, 0)
    for i in range(stations):
        by_status[DEVICE_STATUSES[i % len(DEVICE_STATUSES)]] += 1
    extra = len(range(0, stations, 50))
    return Fleet(
        stations=stations,
        certificates=len(certs),
        online=len(range(0, stations, 3)),
        stale=len(range(1, stations, 3)),
        never=len(range(2, stations, 3)),
        devices_by_status=by_status,
        expiring_30d=expiring,
        pending=extra,
        failed=extra,
    )
