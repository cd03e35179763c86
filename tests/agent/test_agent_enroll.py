"""``fleet-agent enroll`` and the refusal of plain http:// portals off this machine."""

from __future__ import annotations

import pytest

from fleet_agent.portal_client import portal_url_problem
from tests.agent.conftest import device_entry
from tests.agent.test_agent_cli import run_agent

pytestmark = pytest.mark.integration


def test_enroll_writes_the_token_file_once(tmp_path, portal) -> None:
    token = portal.add_station("st-new", [device_entry(None)])
    portal.enrollment_codes["ABCDEFGHJKMN"] = token
    target = tmp_path / "token"
    args = ["enroll", "--portal", portal.url, "--code", "abcd-efgh-jkmn", "--token-file"]
    res = run_agent(*args, str(target))
    assert res.returncode == 0, res.stderr
    assert (
        res.stdout.strip() == f"enrolled as station st-new; token written to {target} (mode 0600)"
    )
    assert target.read_text().strip() == token
    assert target.stat().st_mode & 0o777 == 0o600
    assert token not in res.stdout + res.stderr
    # An existing token file stays unless --force.
    again = run_agent(*args, str(target))
    assert again.returncode == 2
    assert "already exists; give --force" in again.stderr
    # A used code: one sentence, non-zero, the file untouched.
    forced = run_agent(*args, str(target), "--force")
    assert forced.returncode == 1
    assert forced.stderr.strip() == (
        "fleet-agent: this enrolment code was already used; ask staff for a new one."
    )
    assert target.read_text().strip() == token


def test_enroll_and_run_refuse_plain_http_off_loopback(tmp_path) -> None:
    res = run_agent(
        "enroll",
        "--portal",
        "http://portal.example.com",
        "--code",
        "X",
        "--token-file",
        str(tmp_path / "t"),
    )
    assert res.returncode == 2
    assert "uses plain http://" in res.stderr
    assert "use https://" in res.stderr
    (tmp_path / "t").write_text("tok\n")
    res = run_agent(
        "run",
        "--portal",
        "http://10.1.2.3:8000",
        "--token-file",
        str(tmp_path / "t"),
        "--state-dir",
        str(tmp_path / "s"),
    )
    assert res.returncode == 2
    assert "uses plain http://" in res.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://portal.example.com", True),
        ("http://127.0.0.1:8000", True),
        ("http://127.8.0.1", True),
        ("http://[::1]:8000/", True),
        ("http://localhost:8000", True),
        ("http://portal.example.com", False),
        ("http://192.168.1.10", False),
        ("http://[::ffff:10.0.0.1]", False),
        ("ftp://portal", False),
        ("portal.example.com", False),
    ],
)
def test_portal_url_rule(url: str, ok: bool) -> None:
    assert (portal_url_problem(url) is None) is ok
