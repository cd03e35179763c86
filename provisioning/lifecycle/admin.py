"""Admin of the AWS action outbox: what the portal still has to change in AWS, and what failed."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from portal.admin import FleetListMixin, ReadOnlyAdminMixin
from portal.handoff import handoffs_reset, handoffs_tell_admin

from .models import AwsAction
from .services import aws_actions_retry


class OpenFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Pending or running"), ("failed", "Failed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AwsAction]) -> QuerySet[AwsAction]:
        if self.value() == "open":
            return queryset.filter(status__in=[AwsAction.Status.PENDING, AwsAction.Status.RUNNING])
        if self.value() == "failed":
            return queryset.filter(status=AwsAction.Status.FAILED)
        return queryset


@admin.register(AwsAction)
class AwsActionAdmin(FleetListMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "kind",
        "target_display",
        "status",
        "attempts",
        "not_before",
        "last_error",
        "calls_link",
    ]
    list_filter = [OpenFilter, "status", "kind"]
    search_fields = ["aws_certificate_id", "thing_name", "group_name", "=certificate__serial"]
    list_select_related = ["certificate"]
    show_full_result_count = False
    actions = ["retry"]
    readonly_fields = [
        "kind",
        "status",
        "certificate",
        "aws_certificate_id",
        "thing_name",
        "group_name",
        "reason",
        "requested_by",
        "attempts",
        "last_error",
        "not_before",
        "created_at",
        "started_at",
        "finished_at",
        "calls_link",
    ]

    @admin.display(description="target")
    def target_display(self, obj: AwsAction) -> str:
        return obj.target

    @admin.display(description="AWS calls")
    def calls_link(self, obj: AwsAction) -> str:
        url = reverse("admin:provisioning_awsapicall_changelist") + f"?action__id__exact={obj.pk}"
        return format_html('<a href="{}">calls</a>', url)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Read-only rows; the change permission only gates the retry action.
        return obj is None and request.user.has_perm("provisioning.change_awsaction")

    @admin.action(description="Retry the selected failed actions", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[AwsAction]) -> None:
        handoffs_reset()
        count = aws_actions_retry(ids=queryset.values_list("pk", flat=True), actor=request.user)
        noun = "action" if count == 1 else "actions"
        self.message_user(request, f"{count} failed {noun} queued again.", messages.SUCCESS)
        handoffs_tell_admin(self, request)
