"""The JITP setup service: register the supervisor's CA with AWS IoT for Just-In-Time Provisioning.

One path, whichever door starts it (admin button, `manage.py setup_jitp`, Celery task):

1. pre-flight: the access key works in the region, the IAM role exists and AWS IoT may assume
   it, the template's certificate parameters are fields every signing profile of this CA puts
   in device certificates (JITP fails on a certificate that lacks one);
2. generate or load the CA from the key store;
3. get the registration code and build the verification certificate (DEFAULT mode);
4. build the JITP template (inline ``templateBody`` + ``roleArn``, or a named template of type
   JITP, created or given a new default version);
5. register the CA active with auto-registration on, or, when AWS already holds it, update it;
6. read the ATS data endpoint and store the outputs.

Each step is logged into the Job; every failure ends the job with the AWS error code and a
sentence that says what to fix. The code follows AWS's documented API behaviour; moto is
looser (see the tests). Secrets (CA password, role ARN, AWS secret) never reach a log line.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.sites.models import Site
from django.db import transaction
from django.utils import timezone

from portal.handoff import send_task_on_commit
from portal.services import Actor, audit_record

from ..aws.client import AwsError
from ..jobs.models import Job
from ..jobs.services import job_crash_sentence, job_create, job_finish, job_progress, job_start
from .models import JitpSettings
from .steps import Echo, Run

logger = logging.getLogger(__name__)

STEPS = 6


def jitp_settings_get() -> JitpSettings:
    """The JITP settings row of the current site, created with defaults on first use."""
    row, _ = JitpSettings.objects.get_or_create(site=Site.objects.get_current())
    return row


@transaction.atomic
def jitp_settings_update(*, actor: Actor = None, **fields: Any) -> JitpSettings:
    """Change input fields of the settings row (validated); outputs are not writable here."""
    row = JitpSettings.objects.select_for_update().get(pk=jitp_settings_get().pk)
    editable = {f.name for f in JitpSettings._meta.get_fields() if getattr(f, "editable", False)}
    for name, value in fields.items():
        if name not in editable or name in {"id", "site"}:
            raise ValueError(f"{name!r} is not a JITP setting.")
        setattr(row, name, value)
    row.full_clean()
    row.save()
    audit_record(
        action="jitp_settings_update",
        obj=row,
        actor=actor,
        detail={"fields": sorted(n for n in fields if n not in {"ca_password", "role_arn"})},
    )
    return row


def jitp_setup_start(*, actor: Actor = None) -> Job:
    """Create the JITP setup job for the current site's settings and queue its task."""
    from .tasks import jitp_setup

    with transaction.atomic():
        row = jitp_settings_get()
        job = job_create(kind=Job.Kind.JITP_SETUP, title="Set up JITP", actor=actor, total=STEPS)
        JitpSettings.objects.filter(pk=row.pk).update(last_job=job)
        audit_record(action="jitp_setup_start", obj=job, actor=actor)
        send_task_on_commit(jitp_setup, job.pk)
    return job


def jitp_setup_run(*, job: Job, echo: Echo | None = None) -> Job:
    """Run the JITP setup steps for ``job`` (queued) and finish it; returns the finished job.

    ``echo`` receives each log line as it is written (the management command prints them).
    """
    if not job_start(job=job):
        return job
    row = jitp_settings_get()
    run = Run(job=job, row=row, echo=echo)
    steps = [
        ("Pre-flight checks", run.preflight),
        ("CA", run.load_ca),
        ("Registration code and verification certificate", run.verification),
        ("JITP template", run.template),
        ("CA registration", run.register),
        ("Data endpoint", run.endpoint_read),
    ]
    try:
        for number, (title, step) in enumerate(steps, start=1):
            job.refresh_from_db(fields=["status"])
            if job.status != Job.Status.RUNNING:  # cancelled by staff between two steps
                return job
            run.log(f"Step {number}/{STEPS}: {title}.")
            step()
            job_progress(job=job, done=1)
    except AwsError as exc:
        return _finish_failed(run, str(exc), exc.code or "AwsError")
    except Exception as exc:  # noqa: BLE001 - the job must end, with a sentence
        logger.exception("JITP setup job %s crashed", job.pk)
        return _finish_failed(
            run,
            job_crash_sentence(exc, work="JITP setup", again="run the job again"),
            "InternalError",
        )
    now = timezone.now()
    result = (
        f"JITP is set up: CA '{run.ca.alias}' is registered in AWS IoT (id "
        f"{run.ca_certificate_id}); devices connect to {run.endpoint}:8883."
    )
    JitpSettings.objects.filter(pk=row.pk).update(
        registered_ca_alias=run.ca.alias,
        registered_ca_fingerprint=run.ca.fingerprint_sha256,
        aws_ca_certificate_id=run.ca_certificate_id,
        data_endpoint=run.endpoint,
        last_run_at=now,
        last_result=result[:500],
        last_job=job,
    )
    job = job_finish(job=job, status=Job.Status.SUCCEEDED, result=result)
    _echo_last(run)
    audit_record(
        action="jitp_setup_succeeded",
        obj=row,
        actor=job.actor,
        detail={
            "ca": run.ca.alias,
            "aws_ca_certificate_id": run.ca_certificate_id,
            "endpoint": run.endpoint,
        },
    )
    return job


def _finish_failed(run: Run, sentence: str, code: str) -> Job:
    job_progress(job=run.job, failed=1)
    JitpSettings.objects.filter(pk=run.row.pk).update(
        last_run_at=timezone.now(),
        last_result=f"Failed ({code}): {sentence}"[:500],
        last_job=run.job,
    )
    job = job_finish(job=run.job, status=Job.Status.FAILED, result=sentence, error_code=code)
    _echo_last(run)
    return job


def _echo_last(run: Run) -> None:
    if run.echo is not None:
        line = run.job.log_lines.order_by("-id").first()
        if line is not None:
            run.echo(line)
