"""The fleet install task really runs on a Celery worker consuming the ``fleet`` queue."""

from __future__ import annotations

import pytest
from django.db import transaction

from devices.models import MqttDevice
from provisioning.fleet import fleet_install_create, fleet_install_start
from provisioning.models import FleetInstallStation, Job
from tests.conftest import wait_for
from tests.devices.factories import DEVICE_PASSWORD, make_profile, make_station


@pytest.mark.django_db(transaction=True)
def test_fleet_install_runs_on_the_fleet_queue(celery_worker_process) -> None:  # noqa: ANN001
    worker = celery_worker_process(queues="fleet")
    make_station("st-a", online=True)
    make_station("st-off")
    with transaction.atomic():
        install = fleet_install_create(
            device_name="aws",
            profile=make_profile(),
            endpoint="abc-ats.iot.eu-west-1.amazonaws.com",
            key_password=DEVICE_PASSWORD,
            stations=["st-a", "st-off"],
        )
        fleet_install_start(install=install)
    wait_for(
        lambda: MqttDevice.objects.filter(station__name="st-a", name="aws").exists(),
        timeout=60,
        message="the worker to place the device",
    )
    assert Job.objects.get(pk=install.job_id).status == Job.Status.RUNNING
    assert (
        FleetInstallStation.objects.get(install=install, station__name="st-off").status
        == FleetInstallStation.Status.QUEUED
    )
    device = MqttDevice.objects.get(station__name="st-a")
    assert device.key_password == DEVICE_PASSWORD
    assert "provisioning.tasks.fleet_install_run" in worker.output
    assert DEVICE_PASSWORD not in worker.output
