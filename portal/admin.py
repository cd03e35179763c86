"""Admin for cross-cutting rows: audit events (read-only) and staff API tokens."""

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.views.decorators.debug import sensitive_post_parameters

from .models import ApiToken, AuditEvent


def is_changelist(request: HttpRequest) -> bool:
    """True on a changelist page (a list may defer fields its change form needs)."""
    match = request.resolver_match
    return bool(match and (match.url_name or "").endswith("_changelist"))


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value back (a private key must not come back in HTML,
    not even on a form with errors)."""

    def format_value(self, value: Any) -> None:
        return None


class SensitivePostAdminMixin:
    """A ModelAdmin whose forms take secrets. The POST fields named in
    ``sensitive_post_parameters`` are marked with Django's ``sensitive_post_parameters`` on
    the add/change form and the changelist (actions); extra views wrap themselves with
    :meth:`sensitive_view`. Error reports then show them as stars."""

    sensitive_post_parameters: tuple[str, ...] = ()

    def sensitive_view(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        return sensitive_post_parameters(*self.sensitive_post_parameters)(view)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        view = super().changeform_view  # type: ignore[misc]
        return self.sensitive_view(view)(request, object_id, form_url, extra_context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        view = super().changelist_view  # type: ignore[misc]
        return self.sensitive_view(view)(request, extra_context)


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
