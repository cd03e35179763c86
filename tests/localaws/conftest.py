"""Fixtures: one in-process stand-in per test module (ports chosen by the OS)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from localaws import LocalAws

from .helpers import Ca, jitp_template, make_ca, register_ca, unique


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAws]:
    with LocalAws(
        region="eu-west-1", jitp_rate=0, state_dir=tmp_path_factory.mktemp("localaws")
    ) as stand_in:
        yield stand_in


@pytest.fixture
def iot(aws: LocalAws) -> Any:
    return boto3.client(
        "iot",
        endpoint_url=aws.endpoint_url,
        region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="not-a-secret",
    )


@pytest.fixture
def jitp_ca(iot: Any) -> tuple[Ca, str]:
    """A fresh CA registered for JITP with the portal's default template, and its AWS id."""
    ca = make_ca(unique("fleet-ca"))
    return ca, register_ca(iot, ca, template_body=jitp_template())
