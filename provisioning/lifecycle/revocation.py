"""Revocation reaching AWS IoT: the AWS actions a revoked certificate needs, and the
revocation service the staff doors (command, API) call.

The signing service revokes in the portal and sends ``certificate_revoked`` inside its
transaction; :func:`revocation_enqueue` (connected in ``receivers``) records, in that same
transaction, the AWS actions: REVOKED in AWS, its policies detached and, when
``AWS_QUARANTINE_THING_GROUP`` is set, its thing moved into that thing group. The enqueue
wakes the runner once the transaction commits, so AWS shows REVOKED within seconds on a
healthy worker (beat's sweep every 15 s covers a lost message).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError
from cryptography import x509
from django.conf import settings
from django.db import transaction

from devices.models import MqttDevice
from portal.errors import DomainError, InvalidInput, NotFound, Unavailable
from portal.services import Actor
from signing.crypto import aws_certificate_id, serial_with_colons
from signing.models import IssuedCertificate
from signing.services import certificate_revoke, revocation_reason_parse

from .models import AwsAction
from .services import Change, aws_actions_enqueue

Kind = AwsAction.Kind
Status = AwsAction.Status
REVOCATION_KINDS = (Kind.REVOKE, Kind.DETACH_POLICIES, Kind.MOVE_TO_GROUP)


def certificate_aws_id(certificate: IssuedCertificate) -> str:
    """The certificate's AWS id (stored at signing; computed for rows from before)."""
    if certificate.aws_certificate_id:
        return certificate.aws_certificate_id
    cert = x509.load_pem_x509_certificate(certificate.certificate_pem.encode())
    return aws_certificate_id(cert)


def revocation_changes(certificate: IssuedCertificate) -> list[Change]:
    """What AWS must do for a revoked certificate, in the order the runner carries it out."""
    cert_id = certificate_aws_id(certificate)
    changes = [
        Change(Kind.REVOKE, certificate=certificate, aws_certificate_id=cert_id),
        Change(Kind.DETACH_POLICIES, certificate=certificate, aws_certificate_id=cert_id),
    ]
    group = settings.AWS_QUARANTINE_THING_GROUP
    thing = certificate.aws_thing.split(",")[0] or certificate.common_name
    if group and thing:
        changes.append(Change(Kind.MOVE_TO_GROUP, thing_name=thing, group_name=group))
    return changes


def revocation_enqueue(
    *, certificate: IssuedCertificate, reason: str, actor: Actor = None, actor_label: str = ""
) -> list[AwsAction]:
    """Record the AWS actions of a revocation (idempotent: open ones are not doubled)."""
    return aws_actions_enqueue(
        changes=revocation_changes(certificate),
        reason=f"Revoked in the portal ({reason}).",
        actor=actor,
        actor_label=actor_label,
    )


@dataclass
class Revocation:
    """What a revocation door did: the certificates and their AWS actions."""

    revoked: list[IssuedCertificate] = field(default_factory=list)
    already: list[IssuedCertificate] = field(default_factory=list)
    actions: list[AwsAction] = field(default_factory=list)

    @property
    def certificates(self) -> list[IssuedCertificate]:
        return self.revoked + self.already

    @property
    def action_ids(self) -> list[int]:
        return [a.pk for a in self.actions]


def certificates_for_revocation(
    *, serials: Iterable[str] = (), devices: Iterable[str] = ()
) -> list[IssuedCertificate]:
    """The certificates named by serial (hex, colons optional) or by STATION/DEVICE (its
    active certificates). NotFound names every serial or device that matches nothing."""
    found: dict[int, IssuedCertificate] = {}
    missing: list[str] = []
    for raw in serials:
        digits = raw.replace(":", "").strip().upper()
        if not digits or any(c not in "0123456789ABCDEF" for c in digits):
            raise InvalidInput(f"'{raw[:60]}' is not a hexadecimal certificate serial.")
        serial = serial_with_colons(int(digits, 16))
        cert = IssuedCertificate.objects.filter(serial=serial).first()
        if cert is None:
            missing.append(f"serial {raw}")
        else:
            found[cert.pk] = cert
    for name in devices:
        station, sep, device = name.partition("/")
        if not sep or not station or not device:
            raise InvalidInput(f"'{name[:60]}' is not STATION/DEVICE.")
        row = MqttDevice.objects.filter(station__name=station, name=device).first()
        if row is None:
            missing.append(f"device {name}")
            continue
        active = list(
            IssuedCertificate.objects.filter(device=row, status=IssuedCertificate.Status.ACTIVE)
        )
        if not active and row.current_certificate_id is not None:
            active = [IssuedCertificate.objects.get(pk=row.current_certificate_id)]
        if not active:
            missing.append(f"a certificate of device {name}")
        found.update({c.pk: c for c in active})
    if missing:
        raise NotFound(f"There is no {', no '.join(missing)}.")
    return list(found.values())


@transaction.atomic
def certificates_revoke_in_aws(
    *,
    certificates: Iterable[IssuedCertificate],
    reason: str,
    comment: str = "",
    actor: Actor = None,
    actor_label: str = "",
) -> Revocation:
    """Revoke ``certificates`` in the portal and in AWS; all or nothing.

    Idempotent: a certificate revoked before keeps its reason and time; its AWS actions are
    recorded again unless they are still open (AWS's REVOKED is final, so carrying a revoke
    out twice changes nothing).
    """
    code = revocation_reason_parse(reason)
    out = Revocation()
    for given in certificates:
        cert = IssuedCertificate.objects.select_for_update().get(pk=given.pk)
        if cert.status == IssuedCertificate.Status.REVOKED:
            out.already.append(cert)
            out.actions += revocation_enqueue(
                certificate=cert,
                reason=cert.revocation_reason or code,
                actor=actor,
                actor_label=actor_label,
            )
            continue
        # The receiver of certificate_revoked records the AWS actions in this transaction.
        cert = certificate_revoke(
            certificate=cert, reason=code, comment=comment, actor=actor, actor_label=actor_label
        )
        out.revoked.append(cert)
        out.actions += open_revocation_actions(cert)
    return out


def open_revocation_actions(certificate: IssuedCertificate) -> list[AwsAction]:
    cert_id = certificate_aws_id(certificate)
    rows = AwsAction.objects.filter(
        kind__in=[Kind.REVOKE, Kind.DETACH_POLICIES], aws_certificate_id=cert_id
    ).exclude(status__in=[Status.DONE, Status.FAILED])
    group = settings.AWS_QUARANTINE_THING_GROUP
    moves = AwsAction.objects.none()
    if group:
        moves = AwsAction.objects.filter(
            kind=Kind.MOVE_TO_GROUP,
            group_name=group,
            thing_name=certificate.aws_thing.split(",")[0] or certificate.common_name,
            status__in=[Status.PENDING, Status.RUNNING],
        )
    return list(rows.order_by("id")) + list(moves)


class RevocationWaitFailed(Unavailable):
    code = "revocation_not_in_aws"


def revocation_wait(
    *,
    certificates: list[IssuedCertificate],
    action_ids: list[int],
    timeout: float,
    describe: Callable[[str], str | None],
    interval: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once AWS shows every certificate REVOKED (``describe(id)`` gives its status in
    AWS, None when unknown there); RevocationWaitFailed with a sentence when an action failed
    or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    remaining = {certificate_aws_id(c): c for c in certificates}
    while True:
        failed = AwsAction.objects.filter(pk__in=action_ids, status=Status.FAILED).first()
        if failed is not None:
            raise RevocationWaitFailed(
                f"The AWS action {failed.pk} ({failed.get_kind_display()}) failed: "
                f"{failed.last_error or 'no error recorded'}"
            )
        revoke_open = set(
            AwsAction.objects.filter(
                pk__in=action_ids, kind=Kind.REVOKE, status__in=[Status.PENDING, Status.RUNNING]
            ).values_list("aws_certificate_id", flat=True)
        )
        for cert_id in [c for c in remaining if c not in revoke_open]:
            try:
                status = describe(cert_id)
            except (ClientError, BotoCoreError, DomainError):
                status = ""
            if status == "REVOKED":
                del remaining[cert_id]
            elif status is None and not revoke_open:
                # Not in AWS (never connected): nothing there can use it.
                del remaining[cert_id]
        if not remaining:
            return
        if time.monotonic() >= deadline:
            names = ", ".join(sorted(c.common_name for c in remaining.values()))
            raise RevocationWaitFailed(
                f"Timed out after {timeout:g} s: AWS does not show {names} REVOKED yet "
                "(is a worker consuming the 'default' queue, and is the AWS service on?)."
            )
        sleep(interval)
