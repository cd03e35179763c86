"""The AWS service is on by default; ``aws_service`` changes and prints its state."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from provisioning.aws import aws_service_get
from provisioning.models import AwsService


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("aws_service", *args, stdout=out)
    return out.getvalue().strip()


@pytest.mark.django_db
def test_a_fresh_install_has_the_aws_service_enabled() -> None:
    assert not AwsService.objects.exists()
    assert aws_service_get().enabled
    assert AwsService._meta.get_field("enabled").default is True


@pytest.mark.django_db
def test_aws_service_command_prints_and_changes_the_state() -> None:
    assert run() == "AWS service: enabled, region eu-west-1"
    assert run("--disable", "--region", "us-east-1") == "AWS service: disabled, region us-east-1"
    service = AwsService.objects.get()
    assert (service.enabled, service.region) == (False, "us-east-1")
    assert run("--enable") == "AWS service: enabled, region us-east-1"
    assert AwsService.objects.get().enabled


@pytest.mark.django_db
def test_aws_service_command_refuses_an_unknown_region_with_a_sentence() -> None:
    run("--disable")
    with pytest.raises(CommandError, match=r"^'mars-north-1' is not an AWS region") as info:
        run("--enable", "--region", "mars-north-1")
    assert "\n" not in str(info.value)
    service = AwsService.objects.get()
    assert (service.enabled, service.region) == (False, "eu-west-1")


def test_enable_and_disable_are_exclusive() -> None:
    with pytest.raises(CommandError, match="not allowed with argument"):
        run("--enable", "--disable")
