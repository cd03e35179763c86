"""The agent takes the renewal point of the certificate it holds: never the predecessor's
point that the configuration still carries until the next poll (two renewals in a row)."""

from __future__ import annotations

import datetime as dt

from fleet_agent.config import DeviceConfig
from fleet_agent.renewal_point import renewal_point, same_serial

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
NEW_NOT_BEFORE = NOW - dt.timedelta(minutes=5)  # the portal backdates five minutes
NEW_DEFAULT = NOW + dt.timedelta(days=240)
NEW_ISSUED_POINT = NOW + dt.timedelta(days=244)
OLD_POINT_MOVED = NOW - dt.timedelta(minutes=1)  # staff moved the old one into the past


def _point(**overrides: object) -> dt.datetime:
    args: dict[str, object] = {
        "serial": "a1b2",
        "not_before": NEW_NOT_BEFORE,
        "default": NEW_DEFAULT,
        "config_renew_after": OLD_POINT_MOVED,
        "config_serial": "0F:FF",  # the predecessor's serial
        "issued_renew_after": NEW_ISSUED_POINT,
        "issued_serial": "a1b2",
    }
    args.update(overrides)
    return renewal_point(**args)  # type: ignore[arg-type]


def test_the_predecessors_point_in_the_configuration_is_ignored() -> None:
    assert _point() == NEW_ISSUED_POINT
    assert _point(issued_renew_after=None) == NEW_DEFAULT


def test_the_configurations_point_for_this_certificate_wins() -> None:
    moved = NOW - dt.timedelta(seconds=5)
    assert _point(config_serial="A1:B2", config_renew_after=moved) == moved


def test_an_older_portal_without_serials_still_works() -> None:
    # Without a serial, a point older than the certificate belongs to its predecessor...
    assert _point(config_serial=None, issued_renew_after=None) == OLD_POINT_MOVED
    old = NEW_NOT_BEFORE - dt.timedelta(days=1)
    assert _point(config_serial=None, issued_renew_after=None, config_renew_after=old) == (
        NEW_DEFAULT
    )
    # ...and the point the issued request gave beats a point without a serial.
    assert _point(config_serial=None) == NEW_ISSUED_POINT


def test_serials_compare_as_numbers() -> None:
    assert same_serial("0A:1B", "a1b")
    assert not same_serial("0A:1B", "a1c")
    assert not same_serial(None, "a1b")
    assert not same_serial("zz", "a1b")


def test_the_configuration_carries_the_certificate_serial() -> None:
    cfg = DeviceConfig.from_dict(
        {"name": "d", "endpoint": "e", "renew_after": NOW.isoformat(), "certificate_serial": "0A"}
    )
    assert cfg.certificate_serial == "0A"
    assert DeviceConfig.from_dict({"name": "d", "endpoint": "e"}).certificate_serial is None


def test_an_older_portal_still_carrying_the_predecessors_point_is_ignored() -> None:
    # The renewal was made at OLD_POINT_MOVED, which lies after the successor's backdated
    # notBefore: without a serial only remembering that point tells it from a new one.
    assert (
        _point(config_serial=None, issued_renew_after=None, predecessor_renew_after=OLD_POINT_MOVED)
        == NEW_DEFAULT
    )
    moved = NOW + dt.timedelta(seconds=5)
    assert (
        _point(
            config_serial=None,
            issued_renew_after=None,
            config_renew_after=moved,
            predecessor_renew_after=OLD_POINT_MOVED,
        )
        == moved
    )
