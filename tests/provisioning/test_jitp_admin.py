"""The doors in the admin: JITP settings (write-only CA password, "Set up JITP" button and
action, run by a real Celery worker) and the generic job page with its live-log endpoint."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from provisioning.jitp import jitp_settings_get
from provisioning.jobs import job_create, job_finish, job_log, job_progress
from provisioning.models import JitpSettings, Job
from tests.conftest import wait_for

from .conftest import CA_PASSWORD, jitp_configure, moto_ca_certificates


def _settings_url() -> str:
    return reverse("admin:provisioning_jitpsettings_change", args=[jitp_settings_get().pk])


def _form_data(access_key, role_arn: str, **extra: str) -> dict[str, str]:  # noqa: ANN001
    data = {
        "access_key": str(access_key.pk),
        "region": "",
        "role_arn": role_arn,
        "ca_source": "generate",
        "ca_alias": "fleet-ca",
        "ca_password": "",
        "ca_dn": "CN=Fleet CA,O=ACME,C=DE",
        "ca_key_type": "ec-p256",
        "ca_validity_days": "730",
        "template_name": "",
        "thing_type_name": "",
        "thing_groups": "",
        "billing_group": "",
        "attributes": "{}",
        "policy_mode": "least_privilege",
        "certificate_mode": "DEFAULT",
    }
    data.update(extra)
    return data


@pytest.mark.django_db
def test_ca_password_is_write_only_and_kept_when_left_empty(
    admin_client,
    access_key,
    settings,  # noqa: ANN001
) -> None:
    role = "arn:aws:iam::123456789012:role/JITPRole"
    listing = admin_client.get(reverse("admin:provisioning_jitpsettings_changelist"))
    assert listing.status_code == 200
    url = _settings_url()
    response = admin_client.post(
        url, _form_data(access_key, role, ca_password=CA_PASSWORD, _save="Save")
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert jitp_settings_get().ca_password == CA_PASSWORD
    html = admin_client.get(url).content.decode()
    assert CA_PASSWORD not in html
    assert "A password is stored." in html
    assert "Save and set up JITP" in html

    response = admin_client.post(
        url, _form_data(access_key, role, ca_validity_days="365", _save="Save")
    )
    assert response.status_code == 302
    row = jitp_settings_get()
    assert (row.ca_password, row.ca_validity_days) == (CA_PASSWORD, 365)

    response = admin_client.post(url, _form_data(access_key, "arn:aws:s3:::bucket", _save="Save"))
    assert "An IAM role ARN looks like" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_set_up_jitp_button_runs_the_job_in_a_worker_and_shows_it(
    admin_client,
    moto_server,
    access_key,
    jitp_role,
    celery_worker_process,  # noqa: ANN001
) -> None:
    worker = celery_worker_process(queues="default", AWS_ENDPOINT_URL=moto_server)
    response = admin_client.post(
        _settings_url(),
        _form_data(access_key, jitp_role, ca_password=CA_PASSWORD, _setup_jitp="1"),
    )
    job = Job.objects.get(kind=Job.Kind.JITP_SETUP)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:provisioning_job_change", args=[job.pk])

    wait_for(
        lambda: Job.objects.get(pk=job.pk).is_finished,
        timeout=60,
        message="the JITP job to finish in the worker",
    )
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.result
    assert job.actor.username == "admin"
    row = JitpSettings.objects.get()
    assert row.last_job_id == job.pk
    assert row.data_endpoint.endswith("-ats.iot.eu-west-1.amazonaws.com")
    assert len(moto_ca_certificates(moto_server)) == 1

    page = admin_client.get(response["Location"]).content.decode()
    assert "Step 6/6: Data endpoint." in page
    assert "6 done, 0 failed, 6 total" in page
    assert row.data_endpoint in page
    status = admin_client.get(reverse("admin:provisioning_job_status", args=[job.pk])).json()
    assert status["is_finished"] is True
    assert status["percent"] == 100
    assert CA_PASSWORD not in worker.output
    assert CA_PASSWORD not in page


@pytest.mark.django_db
def test_setup_action_needs_its_permission(client, staff_user, access_key) -> None:  # noqa: ANN001
    jitp_configure(access_key, "arn:aws:iam::123456789012:role/JITPRole")
    for codename in ("view_jitpsettings", "change_jitpsettings"):
        staff_user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(staff_user)
    changelist = reverse("admin:provisioning_jitpsettings_changelist")
    assert b"setup_jitp" not in client.get(changelist).content
    assert b"Save and set up JITP" not in client.get(_settings_url()).content

    staff_user.user_permissions.add(Permission.objects.get(codename="run_jitp_setup"))
    staff_user = type(staff_user).objects.get(pk=staff_user.pk)
    client.force_login(staff_user)
    assert b"setup_jitp" in client.get(changelist).content
    response = client.post(
        changelist, {"action": "setup_jitp", "_selected_action": [str(jitp_settings_get().pk)]}
    )
    job = Job.objects.get()
    assert response["Location"] == reverse("admin:provisioning_job_change", args=[job.pk])
    assert job.status == Job.Status.QUEUED  # the task is queued after commit


@pytest.mark.django_db
def test_job_page_is_read_only_and_polls_incrementally(admin_client) -> None:  # noqa: ANN001
    job = job_create(kind=Job.Kind.FLEET_INSTALL, title="Install on 3 stations", total=3)
    first = job_log(job=job, message="station st-1 installed")
    job_log(job=job, message="station st-2 unreachable", level="warning")
    job_progress(job=job, done=1, failed=1)
    url = reverse("admin:provisioning_job_change", args=[job.pk])
    html = admin_client.get(url).content.decode()
    assert "station st-1 installed" in html
    assert "1 done, 1 failed, 3 total" in html
    assert "job-status" in html
    assert "setTimeout(poll" in html
    assert 'name="_save"' not in html
    assert "Delete" not in html

    status_url = reverse("admin:provisioning_job_status", args=[job.pk])
    payload = admin_client.get(status_url, {"after": first.pk}).json()
    assert [line["message"] for line in payload["lines"]] == ["station st-2 unreachable"]
    assert payload["percent"] == 66
    assert payload["is_finished"] is False
    assert admin_client.get(status_url, {"after": "x"}).status_code == 400

    job_finish(job=job, status=Job.Status.FAILED, result="1 of 3 stations failed.")
    html = admin_client.get(url).content.decode()
    assert "setTimeout(poll" not in html
    assert "1 of 3 stations failed." in html
    assert (
        admin_client.post(
            reverse("admin:provisioning_job_delete", args=[job.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert Job.objects.filter(pk=job.pk).exists()


@pytest.mark.django_db
def test_job_page_sections_for_other_job_kinds(
    admin_client,
    settings,
    tmp_path,  # noqa: ANN001
    monkeypatch,
) -> None:  # noqa: ANN001
    from provisioning.jobs import admin as admin_jobs

    (tmp_path / "stations.html").write_text("<table id='stations'>{{ job.title }}</table>")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    monkeypatch.setattr(admin_jobs, "_JOB_SECTIONS", {})
    admin_jobs.register_job_section(Job.Kind.FLEET_INSTALL, "stations.html")
    fleet = job_create(kind=Job.Kind.FLEET_INSTALL, title="Fleet <b>job</b>", total=1)
    jitp = job_create(kind=Job.Kind.JITP_SETUP, title="JITP", total=6)
    page = admin_client.get(reverse("admin:provisioning_job_change", args=[fleet.pk]))
    assert "<table id='stations'>Fleet &lt;b&gt;job&lt;/b&gt;</table>" in page.content.decode()
    other = admin_client.get(reverse("admin:provisioning_job_change", args=[jitp.pk]))
    assert "id='stations'" not in other.content.decode()
