"""Development secrets kept in a local file (mode 0600) so the demo needs no set-up.

Production never uses this: settings refuse to start without real secrets there.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet


def load_or_create_dev_secrets(path: Path) -> dict[str, str]:
    """Return SECRET_KEY and FIELD_ENCRYPTION_KEY from ``path``, generating them once."""
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    wanted = {
        "SECRET_KEY": lambda: secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEY": lambda: Fernet.generate_key().decode(),
    }
    missing = {k: make() for k, make in wanted.items() if not values.get(k)}
    if missing:
        values.update(missing)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("# Generated development secrets. Do not use in production.\n")
            for key, value in values.items():
                fh.write(f"{key}={value}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    os.chmod(path, 0o600)
    return values
