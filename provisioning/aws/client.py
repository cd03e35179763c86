"""The one factory for boto3 clients, with the call log wired in through botocore's events.

Every AWS call the portal makes goes through :func:`aws_client`; that is what makes the
"service disabled" switch, the endpoint override, the retry mode and the call log hold for
all of them.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from django.conf import settings
from django.contrib.sites.models import Site
from django.utils import timezone

from portal.errors import Conflict, InvalidInput

from .models import AccessKey, AwsApiCall, AwsService
from .redaction import redact, redact_text


class AwsError(InvalidInput):
    """An AWS step failed; ``detail`` is a sentence that says what to fix (never a secret)
    and ``code`` is AWS's error code (or the portal's name for the failure), which jobs record.
    """

    code = "AwsError"


class AwsServiceDisabled(AwsError, Conflict):
    """The AWS service switch is off: no request leaves the portal."""

    code = "AwsServiceDisabled"


class AccessKeyUnavailable(AwsError, Conflict):
    """The access key's secret was purged (its storage period elapsed)."""

    code = "AccessKeyPurged"


_current_action: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "aws_current_action", default=None
)


@contextlib.contextmanager
def aws_calls_for_action(action_id: int) -> Iterator[None]:
    """Calls made inside this block are logged as carrying out AWS action ``action_id``."""
    token = _current_action.set(action_id)
    try:
        yield
    finally:
        _current_action.reset(token)


def aws_service_get() -> AwsService:
    """The AWS settings row of the current site, created (enabled) on first use.

    Enabled by default as in the reference product: no request can leave without an
    access key anyway, and staff switch it off when they mean to.
    """
    site = Site.objects.get_current()
    service, _ = AwsService.objects.get_or_create(site=site, defaults={"enabled": True})
    return service


def aws_client(
    service_name: str, *, access_key: AccessKey, region: str | None = None
) -> BaseClient:
    """A boto3 client for ``service_name`` signed with ``access_key``, logging every call."""
    service = aws_service_get()
    if not service.enabled:
        raise AwsServiceDisabled(
            "The AWS service is disabled; enable it under AWS provisioning > AWS service first.",
            code="AwsServiceDisabled",
        )
    access_key.refresh_from_db(fields=["secret", "purged_at"])
    if not access_key.is_stored:
        raise AccessKeyUnavailable(
            f"Access key {access_key.access_key_id} is no longer stored (purged "
            f"{access_key.purged_at or access_key.purge_at:%Y-%m-%d %H:%M}); enter it again.",
            code="AccessKeyPurged",
        )
    region_name = region or service.region
    session = boto3.session.Session(
        aws_access_key_id=access_key.access_key_id,
        aws_secret_access_key=access_key.secret,
        region_name=region_name,
    )
    client = session.client(
        service_name,
        endpoint_url=settings.AWS_ENDPOINT_URL,
        config=Config(
            region_name=region_name,
            retries={"mode": settings.AWS_RETRY_MODE, "max_attempts": settings.AWS_MAX_ATTEMPTS},
            connect_timeout=5,
            read_timeout=30,
            user_agent_extra="fleet-onboarding-portal/0.1",
        ),
    )
    _CallRecorder(client, access_key=access_key, region=region_name).attach()
    AccessKey.objects.filter(pk=access_key.pk).update(last_used_at=timezone.now())
    return client


class _CallRecorder:
    """Writes one AwsApiCall row per API call (retries included in ``retry_attempts``)."""

    def __init__(self, client: BaseClient, *, access_key: AccessKey, region: str) -> None:
        self.client = client
        self.access_key_id = access_key.access_key_id
        self.region = region
        self.service = client.meta.service_model.service_name

    def attach(self) -> None:
        events = self.client.meta.events
        events.register(
            "provide-client-params.*.*", self._params, unique_id="portal-call-log-params"
        )
        events.register("before-call.*.*", self._before, unique_id="portal-call-log-before")
        events.register("after-call.*.*", self._after, unique_id="portal-call-log-after")
        events.register(
            "after-call-error.*.*", self._after_error, unique_id="portal-call-log-error"
        )

    def _params(self, *, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        # The parameters exactly as the caller passed them, redacted once, here.
        context["portal_api_params"] = redact(dict(params))

    def _before(self, *, context: dict[str, Any], **_: Any) -> None:
        context["portal_started"] = time.monotonic()

    def _record(self, *, context: dict[str, Any], operation: str, **fields: Any) -> None:
        started = context.get("portal_started", time.monotonic())
        AwsApiCall.objects.create(
            service=self.service,
            operation=operation[:80],
            region=self.region,
            access_key_id=self.access_key_id,
            parameters=context.get("portal_api_params") or {},
            latency_ms=int((time.monotonic() - started) * 1000),
            action_id=_current_action.get(),
            **fields,
        )

    def _after(
        self,
        *,
        http_response: Any,
        parsed: dict[str, Any],
        model: Any,
        context: dict[str, Any],
        **_: Any,
    ) -> None:
        meta = parsed.get("ResponseMetadata", {}) if isinstance(parsed, dict) else {}
        error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
        self._record(
            context=context,
            operation=model.name,
            http_status=getattr(http_response, "status_code", None),
            error_code=str(error.get("Code", ""))[:80],
            error_message=redact_text(str(error.get("Message", "")))[:500],
            request_id=str(meta.get("RequestId", ""))[:80],
            retry_attempts=int(meta.get("RetryAttempts", 0) or 0),
        )

    def _after_error(
        self, *, exception: Exception, context: dict[str, Any], event_name: str, **_: Any
    ) -> None:
        # botocore passes no operation model with this event (connection errors and the
        # like, after retries): the operation is the last part of the event name.
        self._record(
            context=context,
            operation=event_name.rsplit(".", 1)[-1],
            http_status=None,
            error_code=type(exception).__name__[:80],
            error_message=redact_text(str(exception))[:500],
        )


def oldest_non_default_version(versions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The version to delete when AWS's 5-version limit (policies, provisioning templates) is
    reached: the oldest one that is not the default; None when there is none."""
    candidates = [v for v in versions if not v.get("isDefaultVersion")]
    return min(candidates, key=lambda v: int(v["versionId"])) if candidates else None
