"""Admin for cross-cutting rows: audit events (read-only) and staff API tokens."""

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters

from .admin_rows import FleetChangeList
from .models import ApiToken, AuditEvent

if TYPE_CHECKING:
    from django.template.response import _TemplateForResponseT


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


class FleetListMixin:
    """A changelist of a table that grows with the fleet (stations, devices, certificates,
    requests, logs): its rows are written by portal.admin_rows (each column prepared once
    per page), and the row checkbox directly, as Django's widget template would write it.
    Rendering the widget through the template engine, once per row, was the largest single
    cost of a 100-row page. An admin with a template of its own extends
    ``admin/fleet_change_list.html``."""

    change_list_template: "ClassVar[_TemplateForResponseT | None]" = "admin/fleet_change_list.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return FleetChangeList

    def action_checkbox(self, obj: Any) -> SafeString:
        label = format_html(_("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            label,
        )


class ReadOnlyAdminMixin:
    """Rows that are records, not settings (audit, call log, jobs, certificates): the admin
    shows them but never adds, changes or deletes them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RecentFilter(admin.SimpleListFilter):
    """Rows of the last hour, day, week or 30 days by the ``at`` timestamp (indexed).

    For logs that grow with the fleet, instead of a date hierarchy, which lists its years
    and months with a ``SELECT DISTINCT`` over the whole table on every page.
    """

    title = "when"
    parameter_name = "recent"
    field_name = "at"
    WINDOWS = {
        "1h": ("last hour", timedelta(hours=1)),
        "24h": ("last 24 hours", timedelta(days=1)),
        "7d": ("last 7 days", timedelta(days=7)),
        "30d": ("last 30 days", timedelta(days=30)),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.WINDOWS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        window = self.WINDOWS.get(self.value() or "")
        if window is None:
            return queryset
        return queryset.filter(**{f"{self.field_name}__gte": timezone.now() - window[1]})


def _days(days: int) -> str:
    return "24 hours" if days == 1 else f"{days} days"


def recent_values_filter(field_name: str, days: int = 1) -> type[admin.SimpleListFilter]:
    """A filter on ``field_name`` whose choices are the values seen in the last ``days``
    (read through the index on ``at``): the distinct values of a whole log would be a scan
    of every row it ever kept, on every page."""

    window = timedelta(days=days)

    class RecentValuesFilter(admin.SimpleListFilter):
        title = f"{field_name.replace('_', ' ')} (seen in the last {_days(days)})"
        parameter_name = field_name

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            seen = (
                model_admin.model.objects.filter(at__gte=timezone.now() - window)
                .order_by(field_name)
                .values_list(field_name, flat=True)
                .distinct()
            )
            return [(value, value) for value in seen]

        def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
            value = self.value()
            return queryset.filter(**{field_name: value}) if value else queryset

    return RecentValuesFilter


@admin.register(AuditEvent)
class AuditEventAdmin(FleetListMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "action", "object_repr", "actor_label"]
    list_filter = [
        RecentFilter,
        recent_values_filter("action", days=7),
        recent_values_filter("object_type", days=7),
    ]
    search_fields = ["object_repr", "actor_label", "object_id"]
    list_select_related = ["actor"]
    show_full_result_count = False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["user", "prefix", "created_at", "last_used_at"]
    list_select_related = ["user"]
    fields = ["user", "prefix", "created_at", "last_used_at"]
    readonly_fields = ["user", "prefix", "created_at", "last_used_at"]

    def has_add_permission(self, request, obj=None):  # noqa: ANN001
        return False  # tokens are created by `manage.py create_api_token`, shown once
