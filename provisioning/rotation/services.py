"""Starting a CA rotation and its first phase: the new CA registered in AWS beside the old
one (the JITP steps, same template, both ACTIVE), then the signing profiles switched to it.

One path, whichever door starts it (the admin's Rotate CA, ``manage.py rotate_ca``); the
wave that follows is :mod:`.wave`, the old CA's retirement :mod:`.retire`.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from portal.handoff import send_task_on_commit
from portal.services import Actor, acting_user, audit_record
from signing.errors import WrongCaPassword
from signing.keystore import get_key_store
from signing.models import CertificateAuthority
from signing.services import ca_active_certificates, ca_generate, signing_profiles_switch_ca

from ..aws.client import AwsError
from ..jitp.models import JitpSettings
from ..jitp.services import jitp_settings_get
from ..jitp.steps import Echo, Run
from ..jobs.models import Job
from ..jobs.services import (
    job_crash_sentence,
    job_create,
    job_finish,
    job_log,
    job_progress_set,
    job_start,
)
from .errors import RotationRefused, RotationRunning
from .models import CaRotation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewCa:
    """A CA to generate for the rotation (``ca_generate``'s arguments but the password)."""

    alias: str
    dn: str
    key_type: str = "ec-p256"
    days: int = 730


def _check_cas(from_ca: CertificateAuthority, to_ca: CertificateAuthority) -> None:
    if from_ca.pk == to_ca.pk:
        raise RotationRefused(f"Rotate CA '{from_ca.alias}' to another CA, not to itself.")
    for ca in (from_ca, to_ca):
        if ca.is_archived:
            raise RotationRefused(f"CA '{ca.alias}' is archived (retired); choose another CA.")
    if to_ca.is_expired:
        raise RotationRefused(f"CA '{to_ca.alias}' has expired; choose a valid CA.")
    if to_ca.not_after <= from_ca.not_after:
        raise RotationRefused(
            f"CA '{to_ca.alias}' ends on {to_ca.not_after:%Y-%m-%d}, no later than "
            f"'{from_ca.alias}' ({from_ca.not_after:%Y-%m-%d}); rotate to a CA that outlives it."
        )


def _check_jitp(settings_row: JitpSettings) -> None:
    if not settings_row.registered_ca_alias or settings_row.access_key_id is None:
        raise RotationRefused(
            "JITP has not been set up yet: run 'Set up JITP' (or `manage.py setup_jitp`) first; "
            "the rotation registers the new CA with the same settings."
        )


@transaction.atomic
def ca_rotation_start(
    *,
    from_ca: CertificateAuthority,
    to_ca: CertificateAuthority | None = None,
    new_ca: NewCa | None = None,
    to_ca_password: str,
    rate_per_minute: int = 60,
    failure_threshold: int = 5,
    renew_timeout_minutes: int = 15,
    actor: Actor = None,
    hand_off: bool = True,
) -> CaRotation:
    """Create the rotation row and its job; its task registers the new CA in AWS.

    ``new_ca`` generates the new CA in this transaction (so a refusal leaves no CA behind);
    ``hand_off=False`` leaves the first phase to the caller (:func:`ca_rotation_register`,
    a command running it in the foreground).
    """
    if (to_ca is None) == (new_ca is None):
        raise RotationRefused("Name the new CA, or give the distinguished name of one to generate.")
    from_ca = CertificateAuthority.objects.select_for_update().get(pk=from_ca.pk)
    running = CaRotation.objects.filter(from_ca=from_ca, status__in=CaRotation.UNFINISHED).first()
    if running is not None:
        raise RotationRunning(
            f"CA '{from_ca.alias}' is already being rotated (rotation #{running.pk}, "
            f"{running.get_status_display().lower()}); resume or finish that one."
        )
    settings_row = jitp_settings_get()
    _check_jitp(settings_row)
    if new_ca is not None:
        try:
            to_ca = ca_generate(
                alias=new_ca.alias,
                dn=new_ca.dn,
                password=to_ca_password,
                key_type=new_ca.key_type,
                days=new_ca.days,
                actor=actor,
            )
        except ValidationError as exc:
            raise RotationRefused(" ".join(exc.messages)) from None
    assert to_ca is not None
    _check_cas(from_ca, to_ca)
    try:
        get_key_store().check_password(to_ca, to_ca_password)
    except WrongCaPassword:
        raise RotationRefused(
            f"The password does not unlock the private key of CA '{to_ca.alias}'."
        ) from None
    job = job_create(
        kind=Job.Kind.CA_ROTATION,
        title=f"Rotate CA '{from_ca.alias}' to '{to_ca.alias}'",
        actor=actor,
    )
    rotation = CaRotation(
        from_ca=from_ca,
        to_ca=to_ca,
        ca_password=to_ca_password,
        rate_per_minute=rate_per_minute,
        failure_threshold=failure_threshold,
        renew_timeout_minutes=renew_timeout_minutes,
        job=job,
        created_by=acting_user(actor),
    )
    try:
        rotation.full_clean()
    except ValidationError as exc:
        raise RotationRefused(" ".join(exc.messages)) from None
    rotation.save()
    audit_record(
        action="ca_rotation_start",
        obj=rotation,
        actor=actor,
        detail={
            "from_ca": from_ca.alias,
            "to_ca": to_ca.alias,
            "generated": new_ca is not None,
            "rate_per_minute": rate_per_minute,
            "failure_threshold": failure_threshold,
        },
    )
    if hand_off:
        from . import tasks

        send_task_on_commit(tasks.ca_rotation_register, rotation.pk)
    return rotation


def _jitp_run(rotation: CaRotation, job: Job, echo: Echo | None) -> Run:
    """The JITP steps on an in-memory copy of the site's settings pointed at the new CA.

    The pre-flight checks the template against the profiles of the old CA (those that are
    about to move); the CA step then loads the new CA with its password from the rotation.
    """
    row = copy.copy(jitp_settings_get())
    row.ca_source = JitpSettings.CaSource.EXISTING
    row.ca_alias = rotation.from_ca.alias
    row.ca_password = rotation.ca_password
    row.overwrite_ca = False
    return Run(job=job, row=row, echo=echo)


def ca_rotation_register(*, rotation: CaRotation, echo: Echo | None = None) -> CaRotation:
    """Phase 1: register the new CA in AWS (ACTIVE, auto-registration, same template), point
    the JITP settings at it, switch the signing profiles, open the wave."""
    job = rotation.job
    if not job_start(job=job):
        return rotation
    run = _jitp_run(rotation, job, echo)
    steps = [
        ("Pre-flight checks", run.preflight),
        ("New CA", lambda: _load_new_ca(run, rotation)),
        ("Registration code and verification certificate", run.verification),
        ("JITP template", run.template),
        ("Registration of the new CA beside the old one", run.register),
    ]
    try:
        for number, (title, step) in enumerate(steps, start=1):
            run.log(f"Step {number}/{len(steps) + 2}: {title}.")
            step()
        run.log(f"Step {len(steps) + 1}/{len(steps) + 2}: Signing profiles.")
        _switch(rotation, run)
    except AwsError as exc:
        return _fail(rotation, str(exc), exc.code or "AwsError", echo)
    except (ValidationError, WrongCaPassword) as exc:
        sentence = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        return _fail(rotation, sentence, "ProfileSwitchFailed", echo)
    except Exception as exc:  # noqa: BLE001 - the job must end, with a sentence
        logger.exception("CA rotation %s crashed", rotation.pk)
        sentence = job_crash_sentence(exc, work="rotation", again="start it again")
        return _fail(rotation, sentence, "InternalError", echo)
    run.log(f"Step {len(steps) + 2}/{len(steps) + 2}: Renewal wave.")
    return _open_wave(rotation, run)


def _load_new_ca(run: Run, rotation: CaRotation) -> None:
    run.row.ca_alias = rotation.to_ca.alias
    run.load_ca()


@transaction.atomic
def _switch(rotation: CaRotation, run: Run) -> None:
    """Point the JITP settings at the new CA (a later 'Set up JITP' re-registers it, never
    the old one) and move every profile of the old CA to the new one."""
    password = rotation.ca_password
    before = JitpSettings.objects.get(pk=run.row.pk)
    from_id = (
        before.aws_ca_certificate_id
        if before.registered_ca_fingerprint == rotation.from_ca.fingerprint_sha256
        else ""
    )
    JitpSettings.objects.filter(pk=run.row.pk).update(
        ca_source=JitpSettings.CaSource.EXISTING,
        ca_alias=rotation.to_ca.alias,
        registered_ca_alias=rotation.to_ca.alias,
        registered_ca_fingerprint=rotation.to_ca.fingerprint_sha256,
        aws_ca_certificate_id=run.ca_certificate_id,
    )
    settings_row = JitpSettings.objects.get(pk=run.row.pk)
    settings_row.ca_password = password  # encrypted field: saved through the model
    settings_row.save(update_fields=["ca_password"])
    profiles = signing_profiles_switch_ca(
        from_ca=rotation.from_ca,
        to_ca=rotation.to_ca,
        to_ca_password=password,
        actor=rotation.created_by,
        actor_label="CA rotation",
    )
    # The profiles hold the password now; the rotation row no longer needs its copy.
    CaRotation.objects.filter(pk=rotation.pk).update(
        ca_password="",
        aws_ca_certificate_id=run.ca_certificate_id,
        from_aws_ca_certificate_id=from_id,
    )
    rotation.ca_password = ""
    rotation.aws_ca_certificate_id = run.ca_certificate_id
    names = ", ".join(f"'{p.name}'" for p in profiles) or "none"
    run.log(
        f"{len(profiles)} signing profile{'' if len(profiles) == 1 else 's'} now sign with "
        f"CA '{rotation.to_ca.alias}' ({names}); every new certificate comes from it. The "
        "JITP settings point at the new CA."
    )


@transaction.atomic
def _open_wave(rotation: CaRotation, run: Run) -> CaRotation:
    total = ca_active_certificates(ca=rotation.from_ca).count()
    now = timezone.now()
    CaRotation.objects.filter(pk=rotation.pk).update(
        phase=CaRotation.Phase.WAVE, wave_started_at=now, marked_in_window=0, total=total
    )
    rotation.refresh_from_db()
    job_progress_set(job=rotation.job, done=0, failed=0, total=total)
    minutes = total / rotation.rate_per_minute
    run.log(
        f"{total} active certificate{'' if total == 1 else 's'} under CA "
        f"'{rotation.from_ca.alias}' to renew at {rotation.rate_per_minute} per minute "
        f"(about {minutes:.1f} min); the wave pauses after {rotation.failure_threshold} "
        "failures."
    )
    return rotation


def _fail(rotation: CaRotation, sentence: str, code: str, echo: Echo | None) -> CaRotation:
    with transaction.atomic():
        CaRotation.objects.filter(
            pk=rotation.pk, status__in=CaRotation.statuses_before(CaRotation.Status.FAILED)
        ).update(
            status=CaRotation.Status.FAILED,
            phase=CaRotation.Phase.FINISHED,
            finished_at=timezone.now(),
            result=sentence[:500],
            ca_password="",
        )
        job = job_finish(
            job=rotation.job, status=Job.Status.FAILED, result=sentence, error_code=code
        )
    if echo is not None:
        line = job.log_lines.order_by("-id").first()
        if line is not None:
            echo(line)
    rotation.refresh_from_db()
    return rotation


def rotation_log(rotation: CaRotation, message: str, level: str = "info") -> None:
    job_log(job=rotation.job, message=message, level=level)
