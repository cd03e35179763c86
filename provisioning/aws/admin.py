"""Admin for the AWS service settings, access keys and the AWS API call log (thin doors).

Access-key secrets are write-only here: the add form takes the secret through a password
input that never renders a value back, and no other page shows it in any form.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import ngettext

from portal.admin import (
    FleetListMixin,
    ReadOnlyAdminMixin,
    RecentFilter,
    SensitivePostAdminMixin,
    recent_values_filter,
)

from . import services
from .client import AwsError, aws_service_get
from .models import AccessKey, AwsApiCall, AwsService

# --- AWS service (one row per site) -----------------------------------------------------------


class AwsServiceForm(forms.ModelForm):
    class Meta:
        model = AwsService
        fields = ["enabled", "region"]


@admin.register(AwsService)
class AwsServiceAdmin(admin.ModelAdmin):
    """One settings row per site: the changelist goes straight to this site's row."""

    form = AwsServiceForm
    list_display = ["site", "enabled", "region"]
    list_select_related = ["site"]
    fields = ["enabled", "region"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the row of the current site is created on first use

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        service = aws_service_get()
        return HttpResponseRedirect(
            reverse("admin:provisioning_awsservice_change", args=[service.pk])
        )

    def save_model(self, request: HttpRequest, obj: AwsService, form: Any, change: bool) -> None:
        updated = services.aws_service_update(
            enabled=form.cleaned_data["enabled"],
            region=form.cleaned_data["region"],
            actor=request.user,
        )
        obj.pk = updated.pk


# --- Access keys --------------------------------------------------------------------------------


class AccessKeyAddForm(forms.ModelForm):
    """Id, secret (write-only) and storage period; validation shared with the service."""

    secret = forms.CharField(
        label="Secret access key",
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted and never shown again, not even masked.",
    )

    class Meta:
        model = AccessKey
        fields = ["access_key_id", "store_for", "description"]
        help_texts = {
            "store_for": "The secret is purged automatically when this period elapses.",
        }

    def clean_access_key_id(self) -> str:
        value = self.cleaned_data["access_key_id"].strip()
        services.access_key_id_check(value)
        if AccessKey.objects.filter(access_key_id=value).exists():
            raise ValidationError(
                f"Access key {value} is already stored; delete it first to enter it again.",
                code="duplicate",
            )
        return value

    def clean_secret(self) -> str:
        value = self.cleaned_data["secret"]
        services.access_key_secret_check(value)
        return value

    def _post_clean(self) -> None:
        # The purge date is computed by the service; do not validate a half-built instance.
        pass


class StoredFilter(admin.SimpleListFilter):
    title = "stored"
    parameter_name = "stored"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No (purged)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(secret__isnull=False)
        if self.value() == "no":
            return queryset.filter(secret__isnull=True)
        return queryset


@admin.register(AccessKey)
class AccessKeyAdmin(SensitivePostAdminMixin, admin.ModelAdmin):
    sensitive_post_parameters = ("secret",)
    list_display = ["access_key_id", "stored", "purge_at", "last_used_at", "description"]
    list_filter = [StoredFilter, "store_for"]
    search_fields = ["access_key_id", "description"]
    list_select_related = ["created_by"]
    show_full_result_count = False
    actions = ["clean_up_purged_keys", "test_keys"]
    readonly_fields = [
        "access_key_id",
        "stored",
        "store_for",
        "created_at",
        "created_by",
        "purge_at",
        "purged_at",
        "last_used_at",
    ]
    fields = [
        "access_key_id",
        "stored",
        "store_for",
        "description",
        "created_at",
        "created_by",
        "purge_at",
        "purged_at",
        "last_used_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessKey]:
        # The secret column is never loaded for a page, so it cannot leak into one.
        return (
            super()
            .get_queryset(request)
            .defer("secret")
            .annotate(
                secret_stored=ExpressionWrapper(
                    Q(secret__isnull=False), output_field=BooleanField()
                )
            )
        )

    @admin.display(boolean=True, description="stored", ordering="secret_stored")
    def stored(self, obj: AccessKey) -> bool:
        # Annotated by the query, so the (deferred) secret is never loaded to answer.
        return bool(getattr(obj, "secret_stored", False))

    def get_form(
        self,
        request: HttpRequest,
        obj: AccessKey | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        if obj is None:
            kwargs["form"] = AccessKeyAddForm
            kwargs["fields"] = ["access_key_id", "store_for", "description"]  # + declared secret
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: AccessKey | None = None) -> Any:
        if obj is None:
            return ["access_key_id", "secret", "store_for", "description"]
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: AccessKey | None = None) -> Any:
        return [] if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: AccessKey, form: Any, change: bool) -> None:
        if change:  # only the description is editable
            services.access_key_update(
                access_key=obj,
                description=form.cleaned_data.get("description", ""),
                actor=request.user,
            )
            return
        try:
            created = services.access_key_create(
                access_key_id=form.cleaned_data["access_key_id"],
                secret=form.cleaned_data["secret"],
                store_for=form.cleaned_data["store_for"],
                description=form.cleaned_data.get("description", ""),
                actor=request.user,
            )
        except ValidationError as exc:  # a race with another add: say it, keep nothing
            raise ValidationError(exc.messages) from None
        obj.pk = created.pk
        obj.purge_at = created.purge_at
        obj.created_at = created.created_at
        obj.secret = None  # the page never needs it again

    def delete_model(self, request: HttpRequest, obj: AccessKey) -> None:
        services.access_key_delete(access_key=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AccessKey]) -> None:
        for key in queryset:
            services.access_key_delete(access_key=key, actor=request.user)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # "Clean up purged keys" sweeps every due key, so it needs no selection (Django's
        # changelist refuses actions without one; answer this one here instead).
        if (
            request.method == "POST"
            and request.POST.get("action") == "clean_up_purged_keys"
            and not request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
            and self.has_change_permission(request)
        ):
            self.clean_up_purged_keys(request, self.get_queryset(request).none())
            return HttpResponseRedirect(request.get_full_path())
        return super().changelist_view(request, extra_context)

    @admin.action(
        description="Clean up purged keys (purge every key past its date now)",
        permissions=["change"],
    )
    def clean_up_purged_keys(self, request: HttpRequest, queryset: QuerySet[AccessKey]) -> None:
        count = services.access_key_purge_due(actor=request.user)
        if count:
            self.message_user(
                request,
                ngettext(
                    "Purged %(count)d access key whose storage period had elapsed.",
                    "Purged %(count)d access keys whose storage period had elapsed.",
                    count,
                )
                % {"count": count},
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                "No access key was past its purge date; nothing to clean up.",
                messages.INFO,
            )

    @admin.action(description="Test key (ask AWS STS who it belongs to)", permissions=["test"])
    def test_keys(self, request: HttpRequest, queryset: QuerySet[AccessKey]) -> None:
        ok = failed = 0
        for key in queryset:
            try:
                identity = services.access_key_test(access_key=key, actor=request.user)
            except AwsError as exc:
                failed += 1
                self.message_user(request, str(exc), messages.ERROR)
                continue
            ok += 1
            self.message_user(
                request,
                f"Access key {key.access_key_id} works: account {identity.account}, "
                f"ARN {identity.arn}.",
                messages.SUCCESS,
            )
        summary = ngettext(
            "Tested %(count)d access key:", "Tested %(count)d access keys:", ok + failed
        ) % {"count": ok + failed}
        self.message_user(
            request,
            f"{summary} {ok} worked, {failed} failed.",
            messages.WARNING if failed else messages.INFO,
        )

    def has_test_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.test_{opts.model_name}")


# --- AWS API call log (read-only) ---------------------------------------------------------------


class OutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("ok", "OK"), ("error", "Error")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "ok":
            return queryset.filter(error_code="")
        if self.value() == "error":
            return queryset.exclude(error_code="")
        return queryset


_CALL_FIELDS = [
    "at",
    "service",
    "operation",
    "region",
    "access_key_id",
    "parameters",
    "http_status",
    "error_code",
    "error_message",
    "latency_ms",
    "request_id",
    "retry_attempts",
    "action_link",
]


@admin.register(AwsApiCall)
class AwsApiCallAdmin(FleetListMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "at",
        "service",
        "operation",
        "outcome_display",
        "http_status",
        "error_code",
        "latency_ms",
        "request_id",
        "access_key_id",
        "action_link",
    ]
    list_filter = [RecentFilter, recent_values_filter("operation"), OutcomeFilter]
    search_fields = ["operation", "request_id", "error_code", "access_key_id"]
    show_full_result_count = False
    list_select_related = False  # the action column links by id: no join needed
    fields = tuple(_CALL_FIELDS)
    readonly_fields = _CALL_FIELDS

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        return lookup == "action__id__exact" or super().lookup_allowed(lookup, value, request)

    @admin.display(description="AWS action")
    def action_link(self, obj: AwsApiCall) -> str:
        if obj.action_id is None:
            return "-"
        url = reverse("admin:provisioning_awsaction_change", args=[obj.action_id])
        return format_html('<a href="{}">#{}</a>', url, obj.action_id)

    @admin.display(description="outcome", ordering="error_code")
    def outcome_display(self, obj: AwsApiCall) -> str:
        return obj.outcome
