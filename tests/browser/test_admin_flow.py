"""Browser test: the whole onboarding flow clicked through the admin in a real Chromium.

Against the portal's live server, a real Celery worker, the local AWS IoT stand-in
(``localaws``, in this process) and three stations each running the real agent (in-process
``Agent`` threads), a superuser:

1. logs in;
2. fills the AWS IoT / JITP settings and clicks "Save and set up JITP", watches the job
   succeed in the worker and sees the data endpoint on the settings page;
3. creates a signing profile for the CA the JITP job generated (admin add form);
4. selects the three stations in the stations changelist, runs "Install AWS MQTT device";
5. approves the three onboarding requests in bulk from the approval queue;
6. sees the three stations connected on the fleet-install page and the device list;
7. sees them on the dashboard (the admin's landing page), screenshot ``16-dashboard.png``.

The agents do the rest for real: CSR -> signing in the worker -> certificate -> TLS to the
stand-in (JITP registers the thing and drops the first connection) -> connected.

Screenshots of every step go to ``test-artifacts/browser/`` (CI keeps that folder as an
artifact; see README "Tests"). Chromium is Debian's (``/usr/bin/chromium``); no browser is
ever downloaded. Without it the test is skipped with that reason.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from devices.models import MqttDevice
from fleet_agent.agent import Agent
from fleet_agent.config import AgentOptions
from provisioning.aws.services import aws_service_update
from provisioning.models import AccessKey, FleetInstallStation, JitpSettings, Job
from signing.models import CertificateAuthority, OnboardingRequest
from tests.conftest import ROOT, wait_for
from tests.devices.factories import make_station

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "admin-pass-123"
CA_PASSWORD = "browser-ca-pass-1"
DEVICE_PASSWORD = "browser-device-pw-1"
STATIONS = ["st-browser-1", "st-browser-2", "st-browser-3"]
TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=(
            "Debian's Chromium is not installed at /usr/bin/chromium (`apt-get install chromium`; "
            ".ci/run installs it when it runs as root); this test never downloads a browser."
        ),
    ),
]


@pytest.fixture
def local_aws(tmp_path: Path, settings: Any) -> Iterator[Any]:
    """The local AWS IoT stand-in; the portal (this process) and the worker talk to it."""
    from localaws import LocalAws

    with LocalAws(
        port=0, mqtt_port=0, broker="embedded", region="eu-west-1", state_dir=tmp_path / "aws"
    ) as aws:
        settings.AWS_ENDPOINT_URL = aws.endpoint_url
        yield aws


@pytest.fixture
def browser_page(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the ORM calls the test makes
    # between two browser calls are plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        yield page
        failed = getattr(request.node, "rep_call", None)
        if failed is None or failed.failed:
            page.screenshot(path=str(ARTIFACTS / "99-failure.png"), full_page=True)
        context.close()
        browser.close()


@pytest.fixture
def station_agents(tmp_path: Path) -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.stop(timeout=0)
    for agent in started:
        agent.join(10)


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _reload_until(page: Any, predicate: Any, *, timeout: float, message: str) -> None:
    """Reload the page (as a person would) until ``predicate(page)`` holds."""

    def check() -> bool:
        page.reload()
        return bool(predicate(page))

    wait_for(check, timeout=timeout, interval=1.0, message=message)


@pytest.mark.django_db(transaction=True)
def test_superuser_sets_up_jitp_installs_three_stations_and_sees_them_connected(
    live_server: Any,
    superuser: Any,
    local_aws: Any,
    celery_worker_process: Any,
    browser_page: Any,
    station_agents: list[Agent],
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    url = live_server.url
    celery_worker_process(queues="default,signing,fleet", AWS_ENDPOINT_URL=local_aws.endpoint_url)
    # Done before this session (other admin pages, covered by their own tests): the AWS
    # service is enabled and an access key is stored; the stand-in holds the JITP role.
    aws_service_update(enabled=True, region="eu-west-1")
    key = AccessKey.objects.create(
        access_key_id="AKIABROWSERTEST00001",
        secret="b" * 40,
        store_for="1d",
        purge_at=timezone.now() + timedelta(days=1),
    )
    role_arn = local_aws.create_jitp_role("browser-jitp")
    # Three stations running the real agent; they report in and so come online.
    for name in STATIONS:
        _, token = make_station(name)
        agent = Agent(
            AgentOptions(
                state_dir=tmp_path / name,
                portal=url,
                token=token,
                broker_ca=str(local_aws.server_ca_path),
                connect_host=f"127.0.0.1:{local_aws.mqtt_port}",
                poll_interval=0.5,
                request_poll_max=0.5,
                portal_retry_max=1.0,
                reconnect_max=2.0,
                stable_after=2.0,
                renewal_retry=1.0,
            )
        )
        station_agents.append(agent)
        agent.start()

    # 1. Log in.
    page.goto(f"{url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    _shot(page, "01-login")
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_contain_text("Fleet onboarding portal")
    _shot(page, "02-admin-index")

    # 2. AWS IoT / JITP settings -> "Save and set up JITP" -> job page -> data endpoint.
    page.goto(f"{url}/admin/provisioning/jitpsettings/")
    page.locator("#result_list tbody tr th a").first.click()
    page.select_option("#id_access_key", str(key.pk))
    page.fill("#id_role_arn", role_arn)
    page.select_option("#id_ca_source", "generate")
    page.fill("#id_ca_alias", "browser-ca")
    page.fill("#id_ca_password", CA_PASSWORD)
    page.fill("#id_ca_dn", "CN=Browser Fleet CA,O=ACME,C=DE")
    _shot(page, "03-jitp-settings-filled")
    page.click("input[name=_setup_jitp]")
    expect(page).to_have_url(re.compile(r"/admin/provisioning/job/\d+/change/$"))
    _shot(page, "04-jitp-job-running")
    # The page polls status.json and reloads itself when the job has finished.
    expect(page.locator("#job-status")).to_have_text("Succeeded", timeout=90_000)
    endpoint = JitpSettings.objects.get().data_endpoint
    assert endpoint == local_aws.data_endpoint
    expect(page.locator("#content")).to_contain_text(f"devices connect to {endpoint}:8883")
    expect(page.locator("#job-log")).to_contain_text("Step 6/6: Data endpoint.")
    _shot(page, "05-jitp-job-succeeded")
    page.goto(f"{url}/admin/provisioning/jitpsettings/")
    expect(page.locator("#result_list")).to_contain_text(endpoint)
    page.locator("#result_list tbody tr th a").first.click()
    expect(page.locator(".field-data_endpoint")).to_contain_text(endpoint)
    assert CA_PASSWORD not in page.content()
    _shot(page, "06-jitp-settings-endpoint")

    # 3. A signing profile for the CA the JITP job generated.
    page.goto(f"{url}/admin/signing/signingprofile/add/")
    page.fill("#id_name", "browser-fleet")
    page.select_option("#id_ca", str(CertificateAuthority.objects.get(alias="browser-ca").pk))
    page.fill("#id_ca_password_input", CA_PASSWORD)
    page.fill("#id_country", "DE")
    page.fill("#id_organization", "ACME")
    _shot(page, "07-signing-profile-filled")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    _shot(page, "08-signing-profile-saved")

    # 4. Stations changelist -> select the three -> "Install AWS MQTT device".
    page.goto(f"{url}/admin/devices/station/")
    for name in STATIONS:
        expect(page.locator("#result_list")).to_contain_text(name)
    page.check("#action-toggle")
    page.select_option("select[name=action]", "install_mqtt_device")
    _shot(page, "09-stations-selected")
    page.click("button[name=index]")
    expect(page.locator("h1")).to_contain_text("Install AWS MQTT device")
    assert page.input_value("#id_endpoint") == endpoint  # pre-filled from the JITP settings
    assert len(page.locator("#id_stations option:checked").all()) == 3
    page.select_option("#id_profile", label="browser-fleet")
    page.fill("#id_key_password", DEVICE_PASSWORD)
    page.fill("#id_comment", "browser test")
    _shot(page, "10-fleet-install-form")
    page.click("input[type=submit][value=Run]")
    expect(page).to_have_url(re.compile(r"/admin/provisioning/fleetinstall/\d+/progress/$"))
    expect(page.locator(".messagelist")).to_contain_text("started for 3 stations")
    progress_url = page.url
    _shot(page, "11-fleet-install-started")

    # 5. The approval queue fills up as the agents submit their CSRs; approve all at once.
    page.goto(f"{url}/admin/signing/onboardingrequest/?status__exact=pending")
    _reload_until(
        page,
        lambda p: p.locator("#result_list tbody tr").count() == 3,
        timeout=60,
        message="three pending onboarding requests in the queue",
    )
    expect(page.locator("#result_list")).to_contain_text("browser test")
    page.check("#action-toggle")
    page.select_option("select[name=action]", "approve_selected")
    _shot(page, "12-approval-queue")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Approved 3 requests")
    _shot(page, "13-approved")

    # 6. The job page and the device list show the three stations connected.
    page.goto(progress_url)
    _reload_until(
        page,
        lambda p: "3 done / 0 failed / 3 total" in p.inner_text("#fleet-counts"),
        timeout=90,
        message="the fleet install to count three stations connected",
    )
    expect(page.locator("#content")).to_contain_text("Succeeded")
    for row in page.locator("#fleet-stations tbody tr").all():
        expect(row).to_contain_text("Connected")
    _shot(page, "14-fleet-install-connected")
    page.goto(f"{url}/admin/devices/mqttdevice/?status__exact=connected")
    for name in STATIONS:
        expect(page.locator("#result_list")).to_contain_text(name)
    _shot(page, "15-devices-connected")

    # 7. The dashboard (the admin's landing page) shows the connected fleet and its charts.
    page.goto(f"{url}/admin/")
    expect(page.locator("#cockpit")).to_contain_text("Devices: connected")
    connected = page.locator("#cockpit a.cockpit-tile", has_text="Devices: connected")
    expect(connected.locator(".value")).to_have_text("3")
    expect(page.locator("#cockpit svg.cockpit-chart")).to_have_count(2)
    _shot(page, "16-dashboard")

    # What the pages showed is what happened.
    assert set(MqttDevice.objects.values_list("status", flat=True)) == {"connected"}
    assert FleetInstallStation.objects.filter(status="connected").count() == 3
    assert OnboardingRequest.objects.filter(status="issued").count() == 3
    assert Job.objects.get(kind=Job.Kind.FLEET_INSTALL).status == Job.Status.SUCCEEDED
    assert all(agent.all_connected() and agent.fatal_error is None for agent in station_agents)
    assert local_aws.stats.jitp_registrations == 3
    for name in STATIONS:
        assert local_aws.boto3_client("iot").describe_thing(thingName=f"{name}:aws")
