"""Staff API of connections (docs/connections.md).

Request and response bodies follow the reference LPWAN connector's ``/connections`` shape
(shared INTERFACES.md). Write-only fields (``secretAccessKey``, ``certificate``,
``privateKey``) are accepted and never returned: responses say ``hasCertificate`` etc.
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from ninja import Field, Path, Router, Schema, Status

from portal.errors import Forbidden, InvalidInput, NotFound
from portal.http_api import ErrorOut, StaffTokenAuth
from portal.services import Actor

from .models import Connection
from .selectors import connection_list
from .services import (
    ConnectionData,
    connection_bind_devices,
    connection_create,
    connection_delete,
    connection_replace,
)

router = Router(tags=["connections"])

MAX_ID = 2**63 - 1
_PEM_MAX = 16 * 1024

# Model/service field -> the payload's name, for error sentences.
_FIELD_NAMES = {
    "name": "name",
    "description": "configuration.description",
    "region": "configuration.region",
    "account_prefix": "configuration.accountPrefix",
    "device_type": "configuration.deviceType",
    "access_key": "configuration.accessKeyId",
    "secret_access_key": "configuration.secretAccessKey",
    "access_key_store_for": "configuration.accessKeyStoreFor",
    "certificate_id": "configuration.certificateId",
    "certificate_pem": "configuration.certificate",
    "private_key": "configuration.privateKey",
    "uplink_topic_pattern": "configuration.uplinkTopicPattern",
    "downlink_topic_pattern": "configuration.downlinkTopicPattern",
    "devices": "devices",
}


class ConfigurationIn(Schema):
    description: str = Field("", max_length=500)
    uplinkTopicPattern: str = Field(..., max_length=1024)  # noqa: N815 - contract name
    downlinkTopicPattern: str = Field("", max_length=1024)  # noqa: N815
    deviceType: str = Field("", max_length=128)  # noqa: N815
    region: str = Field(..., max_length=32)
    accountPrefix: str = Field(..., max_length=253)  # noqa: N815
    accessKeyId: str = Field(..., max_length=20, pattern=r"^(AKIA|ASIA)[A-Z0-9]{16}$")  # noqa: N815
    secretAccessKey: str | None = Field(None, max_length=40)  # noqa: N815
    accessKeyStoreFor: str | None = Field(None, max_length=4)  # noqa: N815
    certificateId: str = Field("", max_length=64)  # noqa: N815
    certificate: str | None = Field(None, max_length=_PEM_MAX)
    privateKey: str | None = Field(None, max_length=_PEM_MAX)  # noqa: N815


class ConnectionIn(Schema):
    name: str = Field(..., min_length=1, max_length=100)
    configuration: ConfigurationIn


class ConfigurationOut(Schema):
    description: str
    uplinkTopicPattern: str  # noqa: N815
    downlinkTopicPattern: str  # noqa: N815
    deviceType: str  # noqa: N815
    region: str
    accountPrefix: str  # noqa: N815
    endpoint: str
    accessKeyId: str  # noqa: N815
    hasSecretAccessKey: bool  # noqa: N815
    certificateId: str  # noqa: N815
    hasCertificate: bool  # noqa: N815
    hasPrivateKey: bool  # noqa: N815
    certificateFingerprint: str | None  # noqa: N815
    certificateNotAfter: datetime | None  # noqa: N815


class ConnectionOut(Schema):
    id: int
    name: str
    configuration: ConfigurationOut
    deviceCount: int  # noqa: N815
    created: datetime
    updated: datetime


class DeviceRef(Schema):
    station: str = Field(..., min_length=1, max_length=63)
    device: str = Field(..., min_length=1, max_length=63)


class DeviceBindingIn(Schema):
    devices: list[DeviceRef] = Field(..., max_length=5000)


class DeviceBindingOut(Schema):
    connection: int
    devices: list[DeviceRef]


def _out(conn: Connection) -> dict:
    key = conn.access_key
    count = getattr(conn, "device_count", None)
    return {
        "id": conn.pk,
        "name": conn.name,
        "configuration": {
            "description": conn.description,
            "uplinkTopicPattern": conn.uplink_topic_pattern,
            "downlinkTopicPattern": conn.downlink_topic_pattern,
            "deviceType": conn.device_type,
            "region": conn.region,
            "accountPrefix": conn.account_prefix,
            "endpoint": conn.endpoint,
            "accessKeyId": key.access_key_id,
            "hasSecretAccessKey": key.is_stored,
            "certificateId": conn.certificate_id,
            "hasCertificate": conn.has_certificate,
            "hasPrivateKey": conn.has_private_key,
            "certificateFingerprint": conn.certificate_fingerprint or None,
            "certificateNotAfter": conn.certificate_not_after,
        },
        "deviceCount": count if count is not None else conn.devices.count(),
        "created": conn.created_at,
        "updated": conn.updated_at,
    }


def _data(payload: ConnectionIn) -> ConnectionData:
    c = payload.configuration
    return ConnectionData(
        name=payload.name.strip(),
        description=c.description,
        uplink_topic_pattern=c.uplinkTopicPattern,
        downlink_topic_pattern=c.downlinkTopicPattern,
        device_type=c.deviceType,
        region=c.region,
        account_prefix=c.accountPrefix,
        access_key_id=c.accessKeyId,
        secret_access_key=c.secretAccessKey,
        access_key_store_for=c.accessKeyStoreFor,
        certificate_id=c.certificateId,
        certificate=c.certificate,
        private_key=c.privateKey,
    )


def _invalid(exc: ValidationError, *, code: str = "invalid_connection") -> InvalidInput:
    """The service's per-field refusal, in one sentence naming the payload's fields."""
    parts: list[str] = []
    if hasattr(exc, "error_dict"):
        for field, messages in exc.message_dict.items():
            label = _FIELD_NAMES.get(field, field)
            parts.extend(f"{label}: {m}" for m in messages)
    else:
        parts.extend(exc.messages)
    detail = " ".join(p if p.endswith(".") else p + "." for p in parts[:5])
    return InvalidInput(detail or "The connection is not valid.", code=code)


def _actor(request: HttpRequest) -> Actor:
    """The staff user StaffTokenAuth put on the request."""
    return getattr(request, "auth", None)


def _require(request: HttpRequest, action: str) -> None:
    """The staff user's Django model permission for ``action`` on connections, or a 403.

    Connections hold AWS secrets: a staff token is not enough, its user needs the same
    permission the admin would ask for (a superuser has them all).
    """
    user = getattr(request, "auth", None)
    if user is None or not user.has_perm(f"provisioning.{action}_connection"):
        raise Forbidden(
            f"This API token's user lacks the permission to {action} connections "
            f"(provisioning.{action}_connection)."
        )


def _get(connection_id: int) -> Connection:
    conn = connection_list().filter(pk=connection_id).first()
    if conn is None:
        raise NotFound(f"There is no connection {connection_id}.")
    return conn


_ERRORS = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut}


@router.get(
    "/connections",
    auth=StaffTokenAuth(),
    response={200: list[ConnectionOut], 401: ErrorOut, 403: ErrorOut},
)
def list_connections(request: HttpRequest) -> list[dict]:
    _require(request, "view")
    return [_out(c) for c in connection_list()]


@router.post("/connections", auth=StaffTokenAuth(), response={201: ConnectionOut, **_ERRORS})
def create_connection(request: HttpRequest, payload: ConnectionIn) -> Status:
    _require(request, "add")
    try:
        conn = connection_create(data=_data(payload), actor=_actor(request))
    except ValidationError as exc:
        raise _invalid(exc) from None
    return Status(201, _out(_get(conn.pk)))


@router.get(
    "/connections/{connection_id}", auth=StaffTokenAuth(), response={200: ConnectionOut, **_ERRORS}
)
def get_connection(request: HttpRequest, connection_id: int = Path(..., ge=1, le=MAX_ID)) -> dict:
    _require(request, "view")
    return _out(_get(connection_id))


@router.put(
    "/connections/{connection_id}", auth=StaffTokenAuth(), response={200: ConnectionOut, **_ERRORS}
)
def replace_connection(
    request: HttpRequest, payload: ConnectionIn, connection_id: int = Path(..., ge=1, le=MAX_ID)
) -> dict:
    _require(request, "change")
    conn = _get(connection_id)
    try:
        connection_replace(connection=conn, data=_data(payload), actor=_actor(request))
    except ValidationError as exc:
        raise _invalid(exc) from None
    return _out(_get(conn.pk))


@router.delete(
    "/connections/{connection_id}", auth=StaffTokenAuth(), response={204: None, **_ERRORS}
)
def delete_connection(
    request: HttpRequest, connection_id: int = Path(..., ge=1, le=MAX_ID)
) -> HttpResponse:
    _require(request, "delete")
    connection_delete(connection=_get(connection_id), actor=_actor(request))
    return HttpResponse(status=204)


def _bindings(conn: Connection) -> dict:
    rows = conn.devices.select_related("station").order_by("station__name", "name")
    return {
        "connection": conn.pk,
        "devices": [{"station": d.station.name, "device": d.name} for d in rows],
    }


@router.get(
    "/connections/{connection_id}/devices",
    auth=StaffTokenAuth(),
    response={200: DeviceBindingOut, **_ERRORS},
)
def list_connection_devices(
    request: HttpRequest, connection_id: int = Path(..., ge=1, le=MAX_ID)
) -> dict:
    _require(request, "view")
    return _bindings(_get(connection_id))


@router.put(
    "/connections/{connection_id}/devices",
    auth=StaffTokenAuth(),
    response={200: DeviceBindingOut, **_ERRORS},
)
def bind_connection_devices(
    request: HttpRequest,
    payload: DeviceBindingIn,
    connection_id: int = Path(..., ge=1, le=MAX_ID),
) -> dict:
    """Replace the set of devices bound to the connection (an empty list unbinds all)."""
    _require(request, "change")
    conn = _get(connection_id)
    try:
        connection_bind_devices(
            connection=conn,
            devices=[(d.station, d.device) for d in payload.devices],
            actor=_actor(request),
        )
    except ValidationError as exc:
        raise _invalid(exc, code="unknown_device") from None
    return _bindings(conn)
