"""Admin of the fleet audit: the runs (with a "Run now" button) and their findings (with a
"Fix" action for the fixable ones, which records AWS actions in the outbox)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from portal.admin import FleetListMixin, ReadOnlyAdminMixin
from portal.handoff import send_task_on_commit

from . import tasks
from .models import AuditFinding, FleetAudit
from .services import audit_findings_fix

PERMISSION = "provisioning.run_fleetaudit"


@admin.register(FleetAudit)
class FleetAuditAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    change_list_template = "admin/provisioning/fleetaudit/change_list.html"
    list_display = [
        "started_at",
        "status",
        "requested_by",
        "calls",
        "duration_display",
        "counts_display",
        "findings_link",
    ]
    list_filter = ["status"]
    show_full_result_count = False
    readonly_fields = [
        "started_at",
        "finished_at",
        "status",
        "requested_by",
        "calls",
        "duration_seconds",
        "counts",
        "error",
        "findings_link",
    ]

    @admin.display(description="duration")
    def duration_display(self, obj: FleetAudit) -> str:
        return f"{obj.duration_seconds:.1f} s"

    @admin.display(description="looked at")
    def counts_display(self, obj: FleetAudit) -> str:
        c = obj.counts or {}
        if obj.error:
            return obj.error
        found = c.get("findings", {})
        return (
            f"{c.get('certificates', 0)} certificates, {c.get('things', 0)} things; "
            f"findings: {found.get('error', 0)} errors, {found.get('warning', 0)} warnings, "
            f"{found.get('info', 0)} info"
        )

    @admin.display(description="findings")
    def findings_link(self, obj: FleetAudit) -> str:
        url = reverse("admin:provisioning_auditfinding_changelist") + f"?run__id__exact={obj.pk}"
        return format_html('<a href="{}">findings</a>', url)

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("run/", wrap(self.run_view), name="provisioning_fleetaudit_run"),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {**(extra_context or {}), "can_run": request.user.has_perm(PERMISSION)}
        return super().changelist_view(request, extra)

    def run_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or not request.user.has_perm(PERMISSION):
            raise PermissionDenied
        send_task_on_commit(tasks.fleet_audit)
        self.message_user(
            request,
            "The fleet audit starts on the worker; reload this page to see its findings.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:provisioning_fleetaudit_changelist"))


class FixedFilter(admin.SimpleListFilter):
    title = "fixed"
    parameter_name = "fixed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Not fixed"), ("fixed", "Fix recorded")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[AuditFinding]
    ) -> QuerySet[AuditFinding]:
        if self.value() == "open":
            return queryset.filter(fixed_at__isnull=True)
        if self.value() == "fixed":
            return queryset.filter(fixed_at__isnull=False)
        return queryset


@admin.register(AuditFinding)
class AuditFindingAdmin(FleetListMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["severity", "check_name", "subject", "detail", "fixable", "fixed_at", "run"]
    list_filter = [FixedFilter, "severity", "check_name", "fixable"]
    search_fields = ["subject", "detail"]
    list_select_related = ["run"]
    show_full_result_count = False
    actions = ["fix"]
    readonly_fields = [
        "run",
        "check_name",
        "severity",
        "subject",
        "detail",
        "fixable",
        "fix",
        "certificate",
        "fixed_at",
        "fixed_by",
    ]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Read-only rows; the permission only gates the fix action.
        return obj is None and request.user.has_perm(PERMISSION)

    @admin.action(
        description="Fix the selected findings (through the AWS action outbox)",
        permissions=["change"],
    )
    def fix(self, request: HttpRequest, queryset: QuerySet[AuditFinding]) -> None:
        count = audit_findings_fix(findings=queryset, actor=request.user)
        skipped = queryset.count() - count
        text = f"{count} fix{'es' if count != 1 else ''} recorded; the outbox carries them out."
        if skipped:
            text += f" {skipped} not fixable or already fixed."
        self.message_user(request, text, messages.SUCCESS if count else messages.WARNING)
