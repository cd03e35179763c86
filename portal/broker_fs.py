"""The embedded default broker: kombu's filesystem transport with atomic message files.

kombu's own ``_put`` creates the message file and then writes it; a consumer listing the
folder in between moves away an empty file and dies on it (``JSONDecodeError``: the worker's
"Unrecoverable error"). Here a message is written under a name no consumer picks up and then
renamed into place, which is atomic on one filesystem.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # Consumers take "<stamp>_<uuid>.<queue>.msg" only: "tmp-…" never matches a queue.
        temporary = os.path.join(self.data_folder_out, f"tmp-{uuid.uuid4()}")
        try:
            with open(temporary, "wb", buffering=0) as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(temporary, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def install() -> None:
    """Make ``filesystem://`` broker URLs use this transport (idempotent)."""
    TRANSPORT_ALIASES["filesystem"] = "portal.broker_fs:Transport"
