"""The embedded broker writes each message atomically: a consumer never finds a file that
is not a whole message (kombu's own transport creates the file, then writes it)."""

from __future__ import annotations

import json
from pathlib import Path

from kombu import Connection

from portal.broker_fs import Transport


def test_messages_appear_whole_under_their_final_name_only(tmp_path: Path) -> None:
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path)}
    with Connection(transport=Transport, transport_options=options) as conn:
        channel = conn.default_channel
        for i in range(20):
            channel._put("signing", {"n": i})
        names = sorted(p.name for p in tmp_path.iterdir())
        assert len(names) == 20
        assert all(name.endswith(".signing.msg") for name in names)
        assert sorted(json.loads((tmp_path / n).read_text())["n"] for n in names) == list(range(20))
        assert channel._get("signing")["n"] in range(20)


def test_the_portal_uses_it_for_filesystem_urls() -> None:
    from portal.celery import app

    with app.connection_for_write("filesystem://localhost/") as conn:
        assert isinstance(conn.transport, Transport)
