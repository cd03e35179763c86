"""Admin forms that take secrets: nothing posted comes back in the page, every such view marks
its secret fields with sensitive_post_parameters, the claim role ARN is stored encrypted."""

from __future__ import annotations

import importlib
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from provisioning.claim import claim_setup_save
from provisioning.claim.models import ClaimSetup
from provisioning.models import AccessKey

from .connection_fixtures import KEY_ID, SECRET
from .test_connections_admin import form_data

pytestmark = pytest.mark.django_db
ROLE = "arn:aws:iam::123456789012:role/FleetProvisioning"


def test_connection_form_with_an_error_never_echoes_the_posted_secrets(
    client,  # noqa: ANN001
    superuser,  # noqa: ANN001
    cert_pair,  # noqa: ANN001
) -> None:
    client.force_login(superuser)
    response = client.post(
        "/admin/provisioning/connection/add/",
        form_data(cert_pair, uplink_topic_pattern="things/+/up"),
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "errorlist" in page
    assert SECRET not in page
    assert "PRIVATE KEY" not in page
    for line in cert_pair[1].strip().splitlines()[1:-1]:
        assert line not in page
    assert cert_pair[0].splitlines()[1] not in page


def _sensitive(response) -> set[str]:  # noqa: ANN001
    return set(getattr(response.wsgi_request, "sensitive_post_parameters", ()))


def test_every_admin_view_that_takes_a_secret_marks_it_sensitive(
    client,  # noqa: ANN001
    superuser,  # noqa: ANN001
) -> None:
    from provisioning.jitp.services import jitp_settings_get

    client.force_login(superuser)
    jitp = jitp_settings_get()
    views = {
        reverse("admin:provisioning_accesskey_add"): {"secret"},
        reverse("admin:provisioning_connection_add"): {"secret_access_key", "private_key"},
        reverse("admin:provisioning_claimsetup_add"): {"role_arn"},
        reverse("admin:provisioning_jitpsettings_change", args=[jitp.pk]): {
            "ca_password",
            "role_arn",
        },
        reverse("admin:signing_certificateauthority_add"): {
            "password",
            "private_key_pem",
            "key_password",
            "pkcs12_password",
        },
        reverse("admin:signing_signingprofile_add"): {"ca_password_input"},
        reverse("admin:devices_station_fleet_install"): {"key_password"},
    }
    for url, fields in views.items():
        response = client.post(url, {"ca_password": "x", "secret": "x"})
        assert response.status_code in (200, 302), (url, response.status_code)
        assert fields <= _sensitive(response), url
    # actions post to the changelist: marked there too
    response = client.post(reverse("admin:provisioning_accesskey_changelist"), {"action": ""})
    assert "secret" in _sensitive(response)


def _claim_setup(template_name: str) -> ClaimSetup:
    AccessKey.objects.create(
        access_key_id=KEY_ID,
        secret=SECRET,
        store_for="1d",
        purge_at=timezone.now() + timedelta(days=1),
    )
    return claim_setup_save(
        template_name=template_name, region="eu-west-1", access_key_id=KEY_ID, role_arn=ROLE
    )


def _raw_role_arn() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT role_arn FROM provisioning_claimsetup")
        (raw,) = cursor.fetchone()
    return str(raw)


def test_claim_role_arn_is_stored_encrypted() -> None:
    setup = _claim_setup("enc")
    assert "arn:aws" not in _raw_role_arn()
    assert ClaimSetup.objects.get(pk=setup.pk).role_arn == ROLE


def test_the_migration_encrypts_role_arns_stored_in_clear() -> None:
    setup = _claim_setup("old")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE provisioning_claimsetup SET role_arn = %s", [ROLE])
    migration = importlib.import_module(
        "provisioning.migrations.0003_aws_service_on_claim_role_arn_encrypted"
    )
    assert _raw_role_arn() == ROLE
    migration.encrypt_plain_role_arns(None, SimpleNamespace(connection=connection))
    assert "arn:aws" not in _raw_role_arn()
    assert ClaimSetup.objects.get(pk=setup.pk).role_arn == ROLE
