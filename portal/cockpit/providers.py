"""The built-in providers: what the devices, signing and provisioning apps contribute to the
dashboard, the alerts and the metrics. Every function runs a fixed number of aggregate
queries, whatever the size of the fleet."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q, QuerySet

from devices.models import MqttDevice, Station
from devices.selectors import station_online_since
from provisioning.aws.models import AccessKey, AwsApiCall
from provisioning.fleet.models import FleetInstallStation
from provisioning.jobs.models import Job
from signing.models import CertificateAuthority, IssuedCertificate, OnboardingRequest

from .links import changelist
from .registry import (
    AlertContext,
    Firing,
    Metric,
    Tile,
    alert_condition,
    counter,
    gauge,
    metric_provider,
    tile_provider,
)

# CA expiry thresholds in days, widest first; the level of a firing is how many were crossed.
CA_EXPIRY_THRESHOLDS = (180, 90, 30, 7)
KEY_PURGE_SOON = timedelta(hours=24)
# A certificate counts as "not renewed" this long after its renewal point (an agent renews
# at the point; the grace keeps one poll or a short outage from raising an alert).
RENEWAL_GRACE = timedelta(hours=24)
ACTIVE = IssuedCertificate.Status.ACTIVE


def count_by(queryset: QuerySet[Any], *fields: str) -> list[tuple[Any, ...]]:
    """Rows of ``fields`` values plus their count: one GROUP BY query."""
    return list(queryset.order_by().values_list(*fields).annotate(n=Count("pk")))


def station_counts(now: datetime) -> dict[str, int]:
    since = station_online_since(now)
    return Station.objects.aggregate(
        total=Count("pk"),
        online=Count("pk", filter=Q(last_seen_at__gte=since)),
        stale=Count("pk", filter=Q(last_seen_at__lt=since)),
        never=Count("pk", filter=Q(last_seen_at__isnull=True)),
    )


def device_counts() -> dict[str, int]:
    rows = MqttDevice.objects.order_by().values_list("status").annotate(n=Count("pk"))
    counts = dict.fromkeys(MqttDevice.Status.values, 0)
    counts.update({status: n for status, n in rows})
    return counts


def ca_in_use() -> list[CertificateAuthority]:
    """CAs that at least one signing profile signs with, soonest expiry first."""
    return list(
        CertificateAuthority.objects.filter(signing_profiles__isnull=False)
        .distinct()
        .only("id", "alias", "not_after")
        .order_by("not_after")
    )


# --- dashboard tiles -------------------------------------------------------------------------
@tile_provider
def fleet_health_tiles(now: datetime) -> Iterable[Tile]:
    counts = station_counts(now)
    yield Tile(
        "health",
        "Stations online",
        counts["online"],
        changelist("devices", "station", health="online"),
        "ok",
    )
    yield Tile(
        "health",
        "Stations stale",
        counts["stale"],
        changelist("devices", "station", health="stale"),
        "warning" if counts["stale"] else "ok",
    )
    yield Tile(
        "health",
        "Stations never seen",
        counts["never"],
        changelist("devices", "station", health="never"),
    )
    for status, n in device_counts().items():
        label = MqttDevice.Status(status).label
        level = "error" if status == MqttDevice.Status.ERROR and n else "info"
        url = changelist("devices", "mqttdevice", status__exact=status)
        yield Tile("health", f"Devices: {label.lower()}", n, url, level)


@tile_provider
def attention_tiles(now: datetime) -> Iterable[Tile]:
    requests = OnboardingRequest.objects.filter(
        status__in=[OnboardingRequest.Status.PENDING, OnboardingRequest.Status.FAILED]
    ).aggregate(
        pending=Count("pk", filter=Q(status=OnboardingRequest.Status.PENDING)),
        failed=Count("pk", filter=Q(status=OnboardingRequest.Status.FAILED)),
    )
    errors = MqttDevice.objects.filter(status=MqttDevice.Status.ERROR).count()
    keys = AccessKey.objects.filter(
        secret__isnull=False, purge_at__lte=now + KEY_PURGE_SOON
    ).count()
    failed_rows = FleetInstallStation.objects.filter(
        status=FleetInstallStation.Status.FAILED
    ).count()
    hour_ago = now - timedelta(hours=1)
    aws_errors = AwsApiCall.objects.filter(at__gte=hour_ago).exclude(error_code="").count()
    pending = OnboardingRequest.Status.PENDING
    items = [
        (
            "Pending approvals",
            requests["pending"],
            changelist("signing", "onboardingrequest", status__exact=pending),
            "warning",
        ),
        (
            "Failed onboarding requests",
            requests["failed"],
            changelist("signing", "onboardingrequest", status__exact="failed"),
            "error",
        ),
        (
            "Devices in error",
            errors,
            changelist("devices", "mqttdevice", status__exact="error"),
            "error",
        ),
        (
            "Fleet-install stations failed",
            failed_rows,
            changelist(
                "provisioning", "job", kind__exact=Job.Kind.FLEET_INSTALL, progress_failed__gt=0
            ),
            "error",
        ),
        (
            "AWS API errors (last hour)",
            aws_errors,
            changelist("provisioning", "awsapicall", outcome="error", at__gte=hour_ago),
            "error",
        ),
        (
            "Access keys purged within 24 h",
            keys,
            changelist(
                "provisioning", "accesskey", stored="yes", purge_at__lte=now + KEY_PURGE_SOON
            ),
            "warning",
        ),
    ]
    for title, value, url, level in items:
        yield Tile("attention", title, value, url, level if value else "ok")


@tile_provider
def certificate_tiles(now: datetime) -> Iterable[Tile]:
    soon = now + timedelta(days=30)
    certs = IssuedCertificate.objects.filter(status=ACTIVE).aggregate(
        expiring=Count("pk", filter=Q(not_after__lte=soon)),
        overdue=Count("pk", filter=Q(renew_after__lte=now - RENEWAL_GRACE)),
        next_expiry=Min("not_after"),
    )
    cas = ca_in_use()
    if cas:
        ca = cas[0]
        days = (ca.not_after - now).days
        level = "error" if days <= 30 else "warning" if days <= 90 else "ok"
        value = f"{days} days" if days >= 0 else "expired"
        note = f"CA '{ca.alias}' expires on {ca.not_after:%Y-%m-%d}"
        yield Tile(
            "certificates",
            "CA expiry countdown",
            value,
            changelist("signing", "certificateauthority"),
            level,
            note,
        )
    else:
        yield Tile(
            "certificates",
            "CA expiry countdown",
            "no CA in use",
            changelist("signing", "certificateauthority"),
        )
    yield Tile(
        "certificates",
        "Certificates expiring within 30 days",
        certs["expiring"],
        changelist("signing", "issuedcertificate", status__exact=ACTIVE, not_after__lte=soon),
        "warning" if certs["expiring"] else "ok",
    )
    yield Tile(
        "certificates",
        "Past their renewal point, not renewed",
        certs["overdue"],
        changelist(
            "signing",
            "issuedcertificate",
            status__exact=ACTIVE,
            renew_after__lte=now - RENEWAL_GRACE,
        ),
        "error" if certs["overdue"] else "ok",
    )


# --- alert conditions ------------------------------------------------------------------------
@alert_condition(
    "ca_expiry",
    "CA expiry (180/90/30/7 days)",
    sample=Firing("sample-ca", "CA 'sample-ca' expires on 2030-01-01 (in 29 days).", "critical", 3),
)
def ca_expiry(ctx: AlertContext) -> list[Firing]:
    """A CA used by a signing profile within 180 days of expiry; it clears when no profile
    signs with it any more (replaced by a new CA) or it is no longer that close."""
    out = []
    for ca in ca_in_use():
        days = (ca.not_after - ctx.now).total_seconds() / 86400
        level = sum(1 for t in CA_EXPIRY_THRESHOLDS if days <= t) + (1 if days <= 0 else 0)
        if level == 0:
            continue
        when = f"in {int(days)} days" if days > 0 else "already"
        out.append(
            Firing(
                subject=ca.alias,
                summary=f"CA '{ca.alias}' expires on {ca.not_after:%Y-%m-%d} ({when}).",
                severity="critical" if days <= 30 else "warning",
                level=level,
                detail={
                    "ca": ca.alias,
                    "not_after": ca.not_after.isoformat(),
                    "days_left": int(days),
                },
            )
        )
    return out


def _count_firing(subject: str, count: int, summary: str, **detail: object) -> list[Firing]:
    return [Firing(subject, summary, detail={"count": count, **detail})] if count else []


@alert_condition("renewal_overdue", "Device certificates past their renewal point, not renewed")
def renewal_overdue(ctx: AlertContext) -> list[Firing]:
    count = IssuedCertificate.objects.filter(
        status=ACTIVE, renew_after__lte=ctx.now - RENEWAL_GRACE
    ).count()
    return _count_firing(
        "fleet", count, f"{count} device certificates are past their renewal point and not renewed."
    )


@alert_condition("stations_unseen", "Stations not seen for the channel's configured time")
def stations_unseen(ctx: AlertContext) -> list[Firing]:
    since = ctx.now - timedelta(minutes=ctx.station_unseen_minutes)
    count = Station.objects.filter(last_seen_at__lt=since).count()
    return _count_firing(
        "fleet",
        count,
        f"{count} stations have not been seen for {ctx.station_unseen_minutes} minutes.",
        minutes=ctx.station_unseen_minutes,
    )


@alert_condition("fleet_install_failures", "Fleet installs with failed stations")
def fleet_install_failures(ctx: AlertContext) -> list[Firing]:
    failed = FleetInstallStation.objects.filter(status=FleetInstallStation.Status.FAILED)
    rows = count_by(failed, "install__job_id", "install__job__title")
    return [
        Firing(
            f"job-{job}",
            f"Fleet install '{title}': {n} stations failed.",
            detail={"job": job, "failed": n},
        )
        for job, title, n in rows
    ]


# --- metrics ----------------------------------------------------------------------------------
@metric_provider
def domain_metrics(now: datetime) -> Iterable[Metric]:
    yield gauge(
        "portal_devices",
        "MQTT devices by status.",
        labels=("status",),
        samples=(((status,), n) for status, n in device_counts().items()),
    )
    stations = station_counts(now)
    yield gauge(
        "portal_stations",
        "Stations by health (online, stale, never seen).",
        labels=("health",),
        samples=(((h,), stations[h]) for h in ("online", "stale", "never")),
    )
    requests = dict(
        OnboardingRequest.objects.order_by().values_list("status").annotate(n=Count("pk"))
    )
    yield gauge(
        "portal_onboarding_requests",
        "Onboarding requests by status (pending = waiting for approval).",
        labels=("status",),
        samples=(((s,), requests.get(s, 0)) for s in OnboardingRequest.Status.values),
    )
    expiring = IssuedCertificate.objects.filter(
        status=ACTIVE, not_after__lte=now + timedelta(days=30)
    ).count()
    signed = OnboardingRequest.objects.filter(status=OnboardingRequest.Status.ISSUED).aggregate(
        initial=Count("pk", filter=Q(is_renewal=False)),
        renewal=Count("pk", filter=Q(is_renewal=True)),
    )
    yield gauge(
        "portal_certificates_expiring_30d",
        "Active device certificates expiring within 30 days.",
        expiring,
    )
    yield counter(
        "portal_certificates_signed",
        "Device certificates signed, by kind (initial onboarding or renewal).",
        labels=("kind",),
        samples=((("onboarding",), signed["initial"]), (("renewal",), signed["renewal"])),
    )
    yield gauge(
        "portal_ca_expiry_seconds",
        "Seconds until each CA in use by a signing profile expires.",
        labels=("ca",),
        samples=(((ca.alias,), (ca.not_after - now).total_seconds()) for ca in ca_in_use()),
    )
    calls = (
        AwsApiCall.objects.filter(at__gte=now - timedelta(hours=1))
        .order_by()
        .values_list("operation")
        .annotate(total=Count("pk"), errors=Count("pk", filter=~Q(error_code="")))
    )
    rows = list(calls)
    yield gauge(
        "portal_aws_calls_last_hour",
        "AWS API calls in the last hour, by operation (from the AWS call log).",
        labels=("operation",),
        samples=(((op,), total) for op, total, _ in rows),
    )
    yield gauge(
        "portal_aws_errors_last_hour",
        "AWS API calls that failed in the last hour, by operation.",
        labels=("operation",),
        samples=(((op,), errors) for op, _, errors in rows),
    )
