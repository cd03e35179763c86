"""Admin of stations and MQTT devices: health, tokens shown once, CSV import.

The fleet-install action on stations is added by provisioning (provisioning/fleet/admin.py
re-registers Station with a subclass of StationAdmin).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html, format_html_join

from portal.admin import FleetListMixin, is_changelist

from .enrollment import enrollment_code_create
from .forms import StationCsvImportForm, StationForm
from .models import MqttDevice, Station
from .selectors import HEALTH_CHOICES, station_health, stations_with_health
from .services import station_create, station_rotate_token
from .station_services import CsvImportError, station_update, stations_import_csv

_HEALTH_LABEL = dict(HEALTH_CHOICES)
_HEALTH_COLOUR = {"online": "#2e7d32", "stale": "#ef6c00", "never": "#757575"}


class HealthFilter(admin.SimpleListFilter):
    title = "health"
    parameter_name = "health"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return HEALTH_CHOICES

    def queryset(self, request: HttpRequest, queryset: QuerySet[Station]) -> QuerySet[Station]:
        return stations_with_health(queryset, self.value() or "")


class DeviceStatusFilter(admin.SimpleListFilter):
    title = "device status"
    parameter_name = "device_status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [*MqttDevice.Status.choices, ("none", "No device")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Station]) -> QuerySet[Station]:
        value = self.value()
        if value == "none":
            return queryset.filter(devices__isnull=True)
        if value in MqttDevice.Status.values:
            return queryset.filter(
                pk__in=MqttDevice.objects.filter(status=value).values("station_id")
            )
        return queryset


class MqttDeviceInline(admin.TabularInline):
    model = MqttDevice
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("name", "status", "endpoint", "port", "client_id", "last_connected_at", "last_error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Station)
class StationAdmin(FleetListMixin, admin.ModelAdmin):
    form = StationForm
    list_display = ["name", "site", "health", "agent_version", "device_statuses", "last_seen_at"]
    list_filter = ["site", HealthFilter, DeviceStatusFilter]
    search_fields = ["name", "description", "site"]
    show_full_result_count = False
    list_per_page = 100
    inlines = [MqttDeviceInline]
    change_list_template = "admin/devices/station/change_list.html"
    actions = ["create_enrollment_codes"]
    change_form_template = "admin/devices/station/change_form.html"
    readonly_fields = [
        "token_prefix",
        "created_at",
        "last_seen_at",
        "agent_version",
        "reported_state",
    ]

    def get_fields(self, request: HttpRequest, obj: Station | None = None) -> Any:
        if obj is None:
            return ["name", "description", "site", "tags"]
        return [
            "name",
            "description",
            "site",
            "tags",
            "token_prefix",
            "created_at",
            "last_seen_at",
            "agent_version",
            "reported_state",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Station | None = None) -> list[str]:
        return [*self.readonly_fields, "name"] if obj is not None else []

    def get_queryset(self, request: HttpRequest) -> QuerySet[Station]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "devices",
                    queryset=MqttDevice.objects.only("id", "station_id", "name", "status").order_by(
                        "name"
                    ),
                )
            )
        )

    @admin.display(description="health", ordering="last_seen_at")
    def health(self, obj: Station) -> str:
        value = station_health(obj)
        return format_html(
            '<span style="color:{}">&#9679; {}</span>', _HEALTH_COLOUR[value], _HEALTH_LABEL[value]
        )

    @admin.display(description="devices")
    def device_statuses(self, obj: Station) -> str:
        devices = list(obj.devices.all())  # prefetched: no query per row
        if not devices:
            return "-"
        return format_html_join(", ", "{}: {}", ((d.name, d.get_status_display()) for d in devices))

    # ---- add / change through the services; the token is shown once, never stored
    def save_model(self, request: HttpRequest, obj: Station, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            station_update(
                station=obj,
                description=data["description"],
                site=data["site"],
                tags=data["tags"],
                actor=request.user,
            )
            return
        with transaction.atomic():
            station, token = station_create(
                name=data["name"], description=data["description"], actor=request.user
            )
            station_update(
                station=station, site=data["site"], tags=data["tags"], actor=request.user
            )
        obj.pk = station.pk
        obj.refresh_from_db()
        request._station_token = token  # type: ignore[attr-defined]  # read by response_add

    def get_inlines(self, request: HttpRequest, obj: Station | None) -> list[Any]:
        return list(self.inlines) if obj is not None else []

    def response_add(
        self, request: HttpRequest, obj: Station, post_url_continue: Any = None
    ) -> HttpResponse:
        token = getattr(request, "_station_token", None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        return self._token_page(request, obj, token, "created")

    def _token_page(
        self, request: HttpRequest, station: Station, token: str, what: str
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "station": station,
            "token": token,
            "what": what,
            "title": f"API token for station {station.name}",
        }
        response = TemplateResponse(request, "admin/devices/station/token.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Create enrolment code")
    def create_enrollment_codes(
        self, request: HttpRequest, queryset: QuerySet[Station]
    ) -> HttpResponse:
        """One new code per selected station (ending its earlier ones), shown this once."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        with transaction.atomic():
            codes = [
                (station, enrollment_code_create(station=station, actor=request.user))
                for station in queryset.order_by("name")
            ]
        return self._codes_page(request, codes)

    def _codes_page(self, request: HttpRequest, codes: list[tuple[Station, str]]) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "codes": codes,
            "title": "Enrolment codes",
        }
        response = TemplateResponse(request, "admin/devices/station/codes.html", context)
        response["Cache-Control"] = "no-store"
        return response

    # ---- extra URLs
    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("import-csv/", wrap(self.import_csv_view), name="devices_station_import_csv"),
            path(
                "<path:object_id>/rotate-token/",
                wrap(self.rotate_token_view),
                name="devices_station_rotate_token",
            ),
            *super().get_urls(),
        ]

    def rotate_token_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        station = get_object_or_404(Station, pk=object_id)
        if not self.has_change_permission(request, station):
            raise PermissionDenied
        if request.method == "POST":
            token = station_rotate_token(station=station, actor=request.user)
            return self._token_page(request, station, token, "rotated")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "station": station,
            "title": f"Rotate the token of {station.name}?",
        }
        return TemplateResponse(request, "admin/devices/station/rotate_confirm.html", context)

    def import_csv_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        errors: list[str] = []
        created: list[tuple[Station, str]] = []
        form = StationCsvImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            with_codes = bool(form.cleaned_data.get("enrollment_codes"))
            try:
                with transaction.atomic():
                    created = stations_import_csv(
                        data=form.cleaned_data["file"].read(), actor=request.user
                    )
                    if with_codes:
                        created = [
                            (s, enrollment_code_create(station=s, actor=request.user))
                            for s, _token in created
                        ]
            except CsvImportError as exc:
                errors = exc.errors
            if with_codes and created:
                return self._codes_page(request, created)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "form": form,
            "errors": errors,
            "created": created,
            "title": "Import stations from CSV",
        }
        response = TemplateResponse(request, "admin/devices/station/import_csv.html", context)
        response["Cache-Control"] = "no-store"
        return response


# The device change page; staff edit only how the agent connects and the comment.
DEVICE_FIELDS = (
    "station",
    "name",
    "status",
    "endpoint",
    "port",
    "client_id",
    "certificate_alias",
    "signing_profile",
    "onboarding_comment",
    "current_certificate",
    "certificate_in_aws",
    "renewal_state",
    "last_connected_at",
    "last_error",
    "created_at",
    "updated_at",
)
DEVICE_EDITABLE = ("endpoint", "port", "onboarding_comment")


@admin.register(MqttDevice)
class MqttDeviceAdmin(FleetListMixin, admin.ModelAdmin):
    """Devices are made by fleet installs and driven by agents: mostly read-only here."""

    list_display = [
        "__str__",
        "status",
        "client_id",
        "current_certificate",
        "aws_status",
        "last_connected_at",
        "short_error",
    ]
    # No filter by device name: its choices would be a DISTINCT over every device (search).
    list_filter = ["status", "station__site"]
    search_fields = ["station__name", "name", "client_id"]
    list_select_related = ["station", "current_certificate"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[MqttDevice]:
        # Encrypted fields decrypt on load (Fernet, per row); the list shows none of them.
        qs = super().get_queryset(request)
        if is_changelist(request):
            qs = qs.defer("key_password", "current_certificate__certificate_pem")
        return qs

    fields = DEVICE_FIELDS
    readonly_fields = tuple(f for f in DEVICE_FIELDS if f not in DEVICE_EDITABLE)

    @admin.display(description="certificate in AWS")
    def certificate_in_aws(self, obj: MqttDevice) -> str:
        cert = obj.current_certificate
        if cert is None:
            return "–"
        aws_id = cert.aws_certificate_id[:12] + "…" if cert.aws_certificate_id else "–"
        return f"{aws_id}: {cert.aws_twin_summary()}"

    @admin.display(description="renewal")
    def renewal_state(self, obj: MqttDevice) -> str:
        cert = obj.current_certificate
        if cert is None:
            return "–"
        older = obj.certificates.filter(status="active", created_at__lt=cert.created_at)
        if older.exists():
            return (
                "Renewed, not yet proven on a connection: the previous certificate stays "
                "active until the agent connects with the new one and AWS shows it ACTIVE."
            )
        return f"Next renewal point {cert.renew_after:%Y-%m-%d %H:%M} UTC."

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # devices come from fleet installs (or a hand install on the station)

    @admin.display(description="status in AWS", ordering="current_certificate__aws_status")
    def aws_status(self, obj: MqttDevice) -> str:
        cert = obj.current_certificate
        return (cert.aws_status or "not observed") if cert is not None else "–"

    @admin.display(description="last error")
    def short_error(self, obj: MqttDevice) -> str:
        return obj.last_error[:80] + ("…" if len(obj.last_error) > 80 else "")
