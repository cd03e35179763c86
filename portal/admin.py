"""Admin for cross-cutting rows: audit events (read-only) and staff API tokens."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import ApiToken, AuditEvent


def is_changelist(request: HttpRequest) -> bool:
    """True on a changelist page (a list may defer fields its change form needs)."""
    match = request.resolver_match
    return bool(match and (match.url_name or "").endswith("_changelist"))


class ReadOnlyAdminMixin:
    """Rows that are records, not settings (audit, call log, jobs, certificates): the admin
    shows them but never adds, changes or deletes them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "action", "object_repr", "actor_label"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_repr", "actor_label", "object_id"]
    list_select_related = ["actor"]
    show_full_result_count = False
    date_hierarchy = "at"


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["user", "prefix", "created_at", "last_used_at"]
    list_select_related = ["user"]
    fields = ["user", "prefix", "created_at", "last_used_at"]
    readonly_fields = ["user", "prefix", "created_at", "last_used_at"]

    def has_add_permission(self, request, obj=None):  # noqa: ANN001
        return False  # tokens are created by `manage.py create_api_token`, shown once
