"""The one place where secrets are taken out of what the portal records (AWS call log, job log)."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
_SECRET_KEY_NAMES = re.compile(
    r"(secret|password|passphrase|privatekey|private_key|sessiontoken|session_token|token"
    r"|rolearn|role_arn|credentials|keypair)",
    re.IGNORECASE,
)
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
_PRIVATE_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.DOTALL
)
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])")
# IAM role ARNs are treated as secret-ish (SPEC: the JITP role ARN); AWS error messages quote them.
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+")


def redact_text(text: str) -> str:
    """Remove private keys and anything shaped like an AWS secret key; shorten PEM bodies."""
    text = _PRIVATE_PEM.sub("<private key redacted>", text)
    text = _PEM.sub(lambda m: f"<PEM {m.group(1).lower()}, {len(m.group(0))} bytes>", text)
    text = _ROLE_ARN.sub("arn:aws:iam::***:role/***", text)
    return _AWS_SECRET.sub(REDACTED, text)


def redact(value: Any, *, key: str = "") -> Any:
    """Return a copy of ``value`` (dicts, lists, strings) that is safe to store and show."""
    if key and _SECRET_KEY_NAMES.search(key):
        return REDACTED if value not in (None, "") else value
    if isinstance(value, dict):
        return {k: redact(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact_text(str(value))
