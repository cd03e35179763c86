"""The claim bundle a station receives: claim certificate and key, template name, endpoint."""

from __future__ import annotations

import io
import json
import zipfile

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from portal.errors import Conflict
from portal.services import Actor, audit_record

from .models import ClaimSetup


class ClaimSetupNotReady(Conflict):
    """The claim setup has not finished successfully, so there is no bundle to give out."""

    code = "claim_setup_not_ready"


@transaction.atomic
def claim_bundle_build(*, setup: ClaimSetup, actor: Actor = None) -> bytes:
    """The claim bundle for stations (zip): claim cert + key, template name, endpoint.

    A deliberate, audited act: the key is the shared secret of every station in the batch.
    """
    setup = ClaimSetup.objects.select_for_update().get(pk=setup.pk)
    if setup.status != ClaimSetup.Status.READY or not setup.has_claim_key:
        raise ClaimSetupNotReady(
            f"Claim setup {setup.template_name} is not ready; run setup_claim successfully first."
        )
    claim = {
        "template_name": setup.template_name,
        "endpoint": setup.endpoint,
        "port": 8883,
        "certificate": "claim.cert.pem",
        "key": "claim.private.key",
        "parameters": {"SerialNumber": "<this station's serial number>"},
        "thing_name": f"{setup.thing_name_prefix}<SerialNumber>",
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("claim.json", json.dumps(claim, indent=2) + "\n")
        zf.writestr("claim.cert.pem", setup.claim_certificate_pem)
        info = zipfile.ZipInfo("claim.private.key")
        info.external_attr = 0o600 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, setup.claim_private_key_pem)
    ClaimSetup.objects.filter(pk=setup.pk).update(
        last_downloaded_at=timezone.now(), download_count=F("download_count") + 1
    )
    audit_record(
        action="claim_bundle_download",
        obj=setup,
        actor=actor,
        detail={"certificate_id": setup.claim_certificate_id},
    )
    return buf.getvalue()
