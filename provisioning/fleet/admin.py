"""Admin of fleet installs: the job page (progress bar + per-station table), cancels, and the
"Install AWS MQTT device" action on stations.

The action lives here, not in devices (devices imports neither provisioning nor signing):
``FleetStationAdmin`` subclasses devices' ``StationAdmin``, adds the action, its form page and
URL, and replaces the registration with ``admin.site.unregister(Station)`` then
``admin.site.register(Station, FleetStationAdmin)``. Importing ``devices.admin`` first (the
import below) guarantees Station is registered before it is replaced, whatever the order of
INSTALLED_APPS.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import ngettext

from devices.admin import StationAdmin
from devices.models import Station
from portal.admin import SensitivePostAdminMixin
from portal.errors import DomainError
from portal.handoff import handoffs_reset, handoffs_tell_admin

from ..jobs.admin import register_job_section
from ..jobs.models import Job, JobLogLine
from ..lifecycle.station_admin import StationDecommissionMixin
from .cancel import fleet_install_cancel, fleet_install_station_cancel
from .forms import FleetInstallForm
from .models import FleetInstall, FleetInstallStation
from .plan import plan_summary
from .services import default_endpoint, fleet_install_create, fleet_install_start


def fleet_install_context(install: FleetInstall) -> dict[str, Any]:
    """What the job page shows: the job, counters, per-station rows, recent log lines."""
    job = install.job
    rows = list(install.stations.select_related("station", "device").order_by("station__name"))
    lines = list(JobLogLine.objects.filter(job=job).order_by("-id")[:50])[::-1]
    total = job.progress_total or 0
    return {
        "install": install,
        "job": job,
        "rows": rows,
        "log_lines": lines,
        "done": job.progress_done,
        "failed": job.progress_failed,
        "total": total,
        "done_pct": int(100 * job.progress_done / total) if total else 0,
        "failed_pct": int(100 * job.progress_failed / total) if total else 0,
        "plan": install.plan if install.dry_run else [],
        "plan_summary": plan_summary(install.plan) if install.dry_run else "",
        "terminal": FleetInstallStation.TERMINAL,
    }


@admin.register(FleetInstall)
class FleetInstallAdmin(admin.ModelAdmin):
    list_display = ["job", "device_name", "endpoint", "status", "progress", "dry_run", "created_at"]
    list_filter = ["dry_run", "job__status", "device_name"]
    list_select_related = ["job", "signing_profile"]
    search_fields = ["device_name", "endpoint", "stations__station__name"]
    show_full_result_count = False
    change_list_template = "admin/provisioning/fleetinstall/change_list.html"
    # key_password is not editable and never listed: write-only.
    fields = (
        "job",
        "device_name",
        "signing_profile",
        "endpoint",
        "port",
        "onboarding_comment",
        "concurrency",
        "timeout",
        "dry_run",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # started from the stations changelist action or `manage.py fleet_install`

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[FleetInstall]:
        return super().get_queryset(request).select_related("job", "signing_profile")

    @admin.display(description="status", ordering="job__status")
    def status(self, obj: FleetInstall) -> str:
        return obj.job.get_status_display()

    @admin.display(description="progress")
    def progress(self, obj: FleetInstall) -> str:
        url = reverse("admin:provisioning_fleetinstall_progress", args=[obj.pk])
        job = obj.job
        return format_html(
            '<a href="{}">{} done / {} failed / {} total</a>',
            url,
            job.progress_done,
            job.progress_failed,
            job.progress_total,
        )

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/progress/",
                wrap(self.progress_view),
                name="provisioning_fleetinstall_progress",
            ),
            path(
                "<int:pk>/cancel/", wrap(self.cancel_view), name="provisioning_fleetinstall_cancel"
            ),
            path(
                "<int:pk>/stations/<int:row_id>/cancel/",
                wrap(self.cancel_station_view),
                name="provisioning_fleetinstall_cancel_station",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        if object_id.isdigit():
            return HttpResponseRedirect(
                reverse("admin:provisioning_fleetinstall_progress", args=[int(object_id)])
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def progress_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        install = get_object_or_404(FleetInstall.objects.select_related("job"), pk=pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": str(install.job.title),
            "can_cancel": self._can_cancel(request) and not install.job.is_finished,
            **fleet_install_context(install),
        }
        return TemplateResponse(request, "admin/provisioning/fleetinstall/progress.html", context)

    def _can_cancel(self, request: HttpRequest) -> bool:
        return request.user.has_perm("provisioning.change_job") or request.user.is_superuser

    def cancel_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        install = get_object_or_404(FleetInstall.objects.select_related("job"), pk=pk)
        if request.method != "POST" or not self._can_cancel(request):
            raise PermissionDenied
        try:
            fleet_install_cancel(install=install, actor=request.user)
        except DomainError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
        else:
            self.message_user(request, f"{install.job} was cancelled.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:provisioning_fleetinstall_progress", args=[pk]))

    def cancel_station_view(self, request: HttpRequest, pk: int, row_id: int) -> HttpResponse:
        row = get_object_or_404(
            FleetInstallStation.objects.select_related("station", "install"),
            pk=row_id,
            install_id=pk,
        )
        if request.method != "POST" or not self._can_cancel(request):
            raise PermissionDenied
        try:
            fleet_install_station_cancel(row=row, actor=request.user)
        except DomainError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
        else:
            self.message_user(
                request, f"Station {row.station.name} was cancelled.", messages.SUCCESS
            )
        return HttpResponseRedirect(reverse("admin:provisioning_fleetinstall_progress", args=[pk]))


# The generic job page links a fleet-install job to its per-station page.
register_job_section(Job.Kind.FLEET_INSTALL, "admin/provisioning/job/fleet_install_section.html")


class FleetStationAdmin(StationDecommissionMixin, SensitivePostAdminMixin, StationAdmin):
    """Stations with the "Install AWS MQTT device" and "Decommission" actions (see the module
    docstring)."""

    sensitive_post_parameters = ("key_password",)

    actions = [
        *list(StationAdmin.actions or []),  # type: ignore[misc]
        "install_mqtt_device",
        "decommission_stations",
    ]

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "fleet-install/",
                wrap(self.sensitive_view(self.fleet_install_view)),
                name="devices_station_fleet_install",
            ),
            *super().get_urls(),
        ]

    @admin.action(description="Install AWS MQTT device", permissions=["change"])
    def install_mqtt_device(
        self, request: HttpRequest, queryset: QuerySet[Station]
    ) -> HttpResponse:
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
        return HttpResponseRedirect(reverse("admin:devices_station_fleet_install") + f"?ids={ids}")

    def fleet_install_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = FleetInstallForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                handoffs_reset()
                try:
                    with transaction.atomic():
                        install = fleet_install_create(
                            stations=list(data["stations"]),
                            device_name=data["device_name"],
                            profile=data["profile"],
                            endpoint=data["endpoint"],
                            port=data["port"],
                            key_password=data["key_password"],
                            comment=data["comment"],
                            concurrency=data["concurrency"],
                            timeout=timedelta(hours=data["timeout_hours"]),
                            dry_run=data["dry_run"],
                            actor=request.user,
                        )
                        if not install.dry_run:
                            fleet_install_start(install=install)
                except ValidationError as exc:
                    for field, msgs in exc.message_dict.items():
                        form.add_error(field if field in form.fields else None, msgs)
                else:
                    self.message_user(
                        request,
                        (
                            f"Dry run of {install.job} finished: nothing was changed."
                            if install.dry_run
                            else ngettext(
                                "%(job)s started for %(n)d station.",
                                "%(job)s started for %(n)d stations.",
                                install.job.progress_total,
                            )
                            % {"job": install.job, "n": install.job.progress_total}
                        ),
                        messages.SUCCESS,
                    )
                    handoffs_tell_admin(self, request)
                    return HttpResponseRedirect(
                        reverse("admin:provisioning_fleetinstall_progress", args=[install.pk])
                    )
        else:
            ids = [i for i in request.GET.get("ids", "").split(",") if i.isdigit()]
            form = FleetInstallForm(initial={"stations": ids, "endpoint": default_endpoint()})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "form": form,
            "title": "Install AWS MQTT device",
        }
        return TemplateResponse(
            request, "admin/provisioning/fleetinstall/install_form.html", context
        )


admin.site.unregister(Station)
admin.site.register(Station, FleetStationAdmin)
