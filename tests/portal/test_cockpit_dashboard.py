"""The admin's landing page: tiles with the right figures, links that filter to the same
rows, charts as inline SVG, and a query count that does not grow with the fleet."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal.cockpit.dashboard import dashboard_context, expiries_per_month, signings_per_day
from portal.cockpit.registry import TILE_PROVIDERS, Tile, tile_provider
from tests.devices.factories import make_profile
from tests.portal.fleet_builder import build_fleet

pytestmark = pytest.mark.django_db


def _index_queries(client) -> int:  # noqa: ANN001
    with CaptureQueriesContext(connection) as ctx:
        response = client.get("/admin/")
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_dashboard_queries_do_not_grow_with_the_fleet(admin_client) -> None:  # noqa: ANN001
    profile, now = make_profile(), timezone.now()
    build_fleet(stations=10, certs_per_station=2, profile=profile, now=now, prefix="small")
    admin_client.get("/admin/")  # warm the session, content types and the broker probe
    small = _index_queries(admin_client)
    build_fleet(stations=190, certs_per_station=2, profile=profile, now=now, prefix="large")
    assert _index_queries(admin_client) == small


def test_tiles_show_the_fleet_and_each_link_filters_to_the_same_count(admin_client) -> None:  # noqa: ANN001
    fleet = build_fleet(
        stations=30, certs_per_station=2, profile=make_profile(), now=timezone.now()
    )
    context = dashboard_context()
    tiles = {t.title: t for s in context["sections"] for t in s["tiles"]}
    assert tiles["Stations online"].value == fleet.online
    assert tiles["Stations stale"].value == fleet.stale
    assert tiles["Stations never seen"].value == fleet.never
    assert tiles["Devices: error"].value == fleet.devices_by_status["error"]
    assert tiles["Pending approvals"].value == fleet.pending
    assert tiles["Failed onboarding requests"].value == fleet.failed
    assert tiles["Certificates expiring within 30 days"].value == fleet.expiring_30d
    assert tiles["CA expiry countdown"].value.endswith("days")
    checked = 0
    for tile in tiles.values():
        if not isinstance(tile.value, int):
            continue
        response = admin_client.get(tile.url)
        assert response.status_code == 200, tile.url
        # A filter the changelist does not know redirects with ?e=1; a known one filters.
        assert "e=1" not in response.get("Location", ""), tile.url
        assert response.context["cl"].result_count == tile.value, (tile.title, tile.url)
        checked += 1
    assert checked >= 15


def test_index_page_renders_tiles_charts_and_keeps_the_health_banner(
    admin_client, monkeypatch
) -> None:  # noqa: ANN001
    build_fleet(stations=6, certs_per_station=2, profile=make_profile(), now=timezone.now())
    monkeypatch.setattr("portal.health.broker_problem", lambda **_: "The broker is down (test).")
    html = admin_client.get("/admin/").content.decode()
    assert "The broker is down (test)." in html  # the health warnings banner stays
    assert 'id="cockpit"' in html
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="cockpit-chart"') == 2
    assert "Onboardings and renewals per day" in html
    assert "/admin/devices/station/?health=online" in unescape(html)
    assert not re.search(r"<script[^>]+src=", html.split('id="cockpit"')[1].split("</div>")[0])
    assert "http" not in "".join(re.findall(r"<svg.*?</svg>", html, re.S)).replace(
        "http://www.w3.org/2000/svg", ""
    )


def test_charts_count_per_month_and_per_day() -> None:
    now = timezone.now()
    fleet = build_fleet(stations=9, certs_per_station=3, profile=make_profile(), now=now)
    months = expiries_per_month(now)
    assert len(months) == 12
    assert sum(n for _, n in months) <= fleet.stations  # only active certificates
    days = signings_per_day(now)
    assert len(days) == 30
    # Every certificate was signed 3, 6 or 9 days ago: 9 onboardings, 18 renewals.
    assert sum(a for _, a, _ in days) == 9
    assert sum(b for _, _, b in days) == 18


def test_a_provider_adds_a_tile_in_a_few_lines(admin_client) -> None:  # noqa: ANN001
    @tile_provider
    def findings(now):  # noqa: ANN001, ANN202
        return [Tile("attention", "Fleet-audit findings (test)", 3, "/admin/", "error")]

    try:
        assert "Fleet-audit findings (test)" in admin_client.get("/admin/").content.decode()
    finally:
        TILE_PROVIDERS.remove(findings)
