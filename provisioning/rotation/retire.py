"""Retiring a CA: INACTIVE in AWS (UpdateCACertificate, auto-registration off), then archived.

A row first (a CaRetirement and its Job), then a task that finds the CA's id in AWS and
records the change as an AWS action (``DEACTIVATE_CA``), which the outbox's runner carries
out with retries and pacing, as every change the portal makes in AWS. Refused while a
signing profile signs with the CA or an active certificate remains under it, unless forced;
the rotation's wave calls it itself once no active certificate is left.
"""

from __future__ import annotations

import logging

from django.db import transaction

from portal.handoff import send_task_on_commit
from portal.services import Actor, audit_record
from signing.models import CertificateAuthority
from signing.services import ca_archive, ca_retirement_check

from ..aws.client import AwsError, aws_service_get
from ..aws.models import AccessKey
from ..jitp.errors import StepFailed
from ..jitp.services import jitp_settings_get
from ..jitp.steps import Echo, Run
from ..jobs.models import Job
from ..jobs.services import job_crash_sentence, job_create, job_finish, job_progress, job_start
from ..lifecycle.models import AwsAction
from ..lifecycle.services import Change, aws_actions_enqueue
from .models import CaRetirement, CaRotation

logger = logging.getLogger(__name__)


@transaction.atomic
def ca_retire_start(
    *,
    ca: CertificateAuthority,
    force: bool = False,
    actor: Actor = None,
    rotation: CaRotation | None = None,
    hand_off: bool = True,
) -> Job:
    """Create the retirement row and its job (idempotent while one is under way).

    A CA with active certificates is refused unless ``force`` (those devices stop working
    in AWS). An unfinished rotation away from the CA ends with this retirement.
    """
    ca = CertificateAuthority.objects.select_for_update().get(pk=ca.pk)
    under_way = (
        CaRetirement.objects.select_related("job")
        .filter(ca=ca, job__status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
        .first()
    )
    if under_way is not None:
        return under_way.job
    active = ca_retirement_check(ca=ca, force=force)
    if rotation is None:
        rotation = CaRotation.objects.filter(
            from_ca=ca, status__in=CaRotation.UNFINISHED, phase=CaRotation.Phase.WAVE
        ).first()
    job = job_create(kind=Job.Kind.CA_RETIRE, title=f"Retire CA '{ca.alias}'", actor=actor, total=1)
    retirement = CaRetirement.objects.create(
        ca=ca, job=job, rotation=rotation, forced=force and active > 0, active_certificates=active
    )
    if rotation is not None:
        CaRotation.objects.filter(pk=rotation.pk).update(
            status=CaRotation.Status.RUNNING, phase=CaRotation.Phase.RETIRE, paused_at=None
        )
    audit_record(
        action="ca_retire_start",
        obj=retirement,
        actor=actor,
        actor_label="" if actor else ("CA rotation" if rotation else ""),
        detail={"ca": ca.alias, "forced": retirement.forced, "active_certificates": active},
    )
    if hand_off:
        from . import tasks

        send_task_on_commit(tasks.ca_retire, job.pk)
    return job


def _known_aws_ids(ca: CertificateAuthority) -> tuple[str, ...]:
    """AWS ids recorded for ``ca`` by rotations (as old or new CA) and earlier retirements."""
    ids = [
        *CaRotation.objects.filter(from_ca=ca).values_list("from_aws_ca_certificate_id", flat=True),
        *CaRotation.objects.filter(to_ca=ca).values_list("aws_ca_certificate_id", flat=True),
        *CaRetirement.objects.filter(ca=ca).values_list("aws_ca_certificate_id", flat=True),
    ]
    return tuple(dict.fromkeys(i for i in ids if i))


def ca_retire_run(*, job: Job, echo: Echo | None = None) -> Job:
    """Set the CA INACTIVE in AWS (if AWS holds it) and archive it; finish the job."""
    if not job_start(job=job):
        return job
    retirement = CaRetirement.objects.select_related("ca").get(job=job)
    ca = retirement.ca
    run = Run(job=job, row=jitp_settings_get(), echo=echo)
    try:
        key = AccessKey.objects.filter(pk=run.row.access_key_id or 0).first()
        if key is None:
            raise StepFailed("Choose the AWS access key in the JITP settings.", code="NoAccessKey")
        run.access_key = key
        run.region = run.row.region or aws_service_get().region
        run.ca = ca
        if retirement.forced:
            run.warn(
                f"Forced: {retirement.active_certificates} active certificate"
                f"{'' if retirement.active_certificates == 1 else 's'} under CA '{ca.alias}' "
                "stop working in AWS."
            )
        aws_id = run.registered_id(known_ids=_known_aws_ids(ca))
        if aws_id is None:
            run.log(f"AWS does not hold CA '{ca.alias}'; nothing to deactivate there.")
        else:
            action = _deactivate_in_aws(retirement, aws_id, actor=job.actor)
            run.log(
                f"CA '{ca.alias}' (id {aws_id}) is set INACTIVE in AWS IoT, auto-registration "
                f"off, by AWS action {action.pk} (the outbox retries it until AWS has it)."
            )
    except AwsError as exc:
        return _failed(job, str(exc), exc.code or "AwsError")
    except Exception as exc:  # noqa: BLE001 - the job must end, with a sentence
        logger.exception("CA retirement job %s crashed", job.pk)
        return _failed(
            job,
            job_crash_sentence(exc, work="retirement", again="retire the CA again"),
            "InternalError",
        )
    ca_archive(ca=ca, actor=job.actor, actor_label="CA retirement", forced=retirement.forced)
    job_progress(job=job, done=1)
    return job_finish(
        job=job,
        status=Job.Status.SUCCEEDED,
        result=f"CA '{ca.alias}' is retired: archived (its key stays in the key store; it signs "
        "nothing more) and set INACTIVE in AWS by the outbox.",
    )


@transaction.atomic
def _deactivate_in_aws(retirement: CaRetirement, aws_id: str, *, actor: Actor) -> AwsAction:
    CaRetirement.objects.filter(pk=retirement.pk).update(aws_ca_certificate_id=aws_id)
    (action,) = aws_actions_enqueue(
        changes=[Change(kind=AwsAction.Kind.DEACTIVATE_CA, aws_certificate_id=aws_id)],
        reason=f"CA '{retirement.ca.alias}' retired",
        actor=actor,
        actor_label="CA retirement",
    )
    return action


def _failed(job: Job, sentence: str, code: str) -> Job:
    job_progress(job=job, failed=1)
    return job_finish(job=job, status=Job.Status.FAILED, result=sentence, error_code=code)
