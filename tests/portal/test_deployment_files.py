"""The deployment files: no secrets in the image, the web port on loopback, trusted proxy only."""

from __future__ import annotations

import fnmatch

import pytest

from tests.conftest import ROOT


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, close enough for these patterns: the last matching line wins."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = {pattern, pattern.removeprefix("**/")}
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        suffixes = ["/".join(parts[i:]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, c) for c in candidates for p in prefixes) or (
            pattern.startswith("**/") and any(fnmatch.fnmatchcase(s, pattern[3:]) for s in suffixes)
        ):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_secrets_and_data_out_of_the_image() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for name in (".env", "*.env", "data/"):
        assert name in patterns
    for path in (".env", "prod.env", "data/secrets.env", "data/portal.sqlite3", "deploy/.env"):
        assert _ignored(path, patterns), path
    for path in ("manage.py", "portal/settings.py", "pyproject.toml"):
        assert not _ignored(path, patterns), path


def test_compose_publishes_web_on_loopback_and_trusts_only_the_gateway() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    web = services["web"]["command"]
    trusted = web[web.index("--forwarded-allow-ips") + 1]
    gateway = compose["networks"]["default"]["ipam"]["config"][0]["gateway"]
    assert trusted == "${FORWARDED_ALLOW_IPS:-" + gateway + "}"
    assert "*" not in trusted
    assert "-Q" not in services["worker"]["command"]  # a plain worker consumes every queue


def test_the_image_trusts_forwarded_headers_from_loopback_only() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--forwarded-allow-ips" not in dockerfile.split("CMD", 1)[1]
    assert '"*"' not in dockerfile
