"""Chaos: two dozen stations onboard while gunicorn workers and Celery children are killed,
Redis is killed and restarted empty, and PostgreSQL connections are cut.

Runs ``benchmarks/fleet_chaos.py`` (the whole stack as real processes, see its docstring)
on a PostgreSQL database of its own; the script checks the end state (every station
connected, one active certificate per device, nothing stuck longer than one sweep period,
no 500 from any door) and exits 1 when a check fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(480),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
        reason="the chaos run cuts PostgreSQL connections: set DATABASE_URL to PostgreSQL.",
    ),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server."),
]


def test_onboarding_survives_killed_processes_an_emptied_broker_and_cut_connections(
    demo_env: dict[str, str],
) -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/fleet_chaos.py", "--stations", "24", "--timeout", "240"],
        cwd=ROOT,
        env=demo_env,
        capture_output=True,
        text=True,
        timeout=450,
    )
    report = result.stdout + result.stderr[-4000:]
    assert result.returncode == 0, report
    assert "CHAOS OK" in result.stdout, report
    for check in (
        "every station connected",
        "exactly one active certificate per device",
        "no request stuck longer than one sweep period",
        "no 500 from any door",
    ):
        assert f"PASS: {check}" in result.stdout, report
