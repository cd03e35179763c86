"""Which renewal point belongs to the certificate the device holds.

The portal's configuration carries ``renew_after`` and, since protocol 1.1,
``certificate_serial``: the certificate that renewal point belongs to. Right after a renewal
the configuration may still carry the predecessor's point until the next poll; taking it for
the new certificate's renews a second time. So, in this order:

1. the configuration's point when its serial is the held certificate's (staff may move it);
2. the point the issued request's response gave for the held certificate (state file);
3. a configuration point without a serial (an older portal), if not older than the held
   certificate's ``not_before`` and not the point the predecessor was renewed at (the
   portal backdates ``not_before`` five minutes, so that point can lie after it);
4. two thirds into the held certificate's lifetime.
"""

from __future__ import annotations

import datetime as dt


def same_serial(a: str | None, b: str | None) -> bool:
    """Serials compared as numbers: ``0A:1B`` (portal) equals ``a1b`` (agent)."""
    if not a or not b:
        return False
    try:
        return int(a.replace(":", ""), 16) == int(b.replace(":", ""), 16)
    except ValueError:
        return False


def renewal_point(
    *,
    serial: str,
    not_before: dt.datetime,
    default: dt.datetime,
    config_renew_after: dt.datetime | None,
    config_serial: str | None,
    issued_renew_after: dt.datetime | None,
    issued_serial: str | None,
    predecessor_renew_after: dt.datetime | None = None,
) -> dt.datetime:
    """The renewal point of the held certificate (``serial``), by the rules above."""
    if config_renew_after is not None and config_serial and same_serial(config_serial, serial):
        return config_renew_after
    if issued_renew_after is not None and same_serial(issued_serial, serial):
        return issued_renew_after
    if (
        config_renew_after is not None
        and not config_serial
        and config_renew_after >= not_before
        and config_renew_after != predecessor_renew_after
    ):
        return config_renew_after
    return default
