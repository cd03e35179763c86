"""Admin of the approval queue: onboarding requests, approved or rejected (with a reason)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import Truncator

from portal.admin import FleetListMixin, is_changelist
from portal.handoff import handoffs_reset, handoffs_tell_admin

from ..crypto import KEY_TYPE_CHOICES
from ..models import OnboardingRequest
from ..services import cn_render, onboarding_requests_approve, onboarding_requests_reject
from .common import CaExpiryWarningMixin, plural, reason_form_response


class RejectForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="The station's operator sees this reason.",
    )


class KeyTypeFilter(admin.SimpleListFilter):
    """The key types the portal knows (a fixed list: no DISTINCT over every request)."""

    title = "key type"
    parameter_name = "key_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(KEY_TYPE_CHOICES)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(key_type=self.value()) if self.value() else queryset


@admin.register(OnboardingRequest)
class OnboardingRequestAdmin(FleetListMixin, CaExpiryWarningMixin, admin.ModelAdmin):
    """The approval queue."""

    list_display = [
        "id",
        "station",
        "device_name",
        "common_name",
        "short_comment",
        "key_type",
        "short_fingerprint",
        "age",
        "is_renewal",
        "status",
        "decided",
    ]
    list_filter = ["status", "is_renewal", KeyTypeFilter, "profile"]
    search_fields = ["station__name", "device__name", "public_key_fingerprint", "comment"]
    # device__station: the row checkbox's label is str(request), which names the device
    list_select_related = ["station", "device__station", "profile", "decided_by"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[OnboardingRequest]:
        # Encrypted fields of the related rows decrypt on load (per row); the list needs none.
        qs = super().get_queryset(request)
        if is_changelist(request):
            qs = qs.defer("csr_pem", "device__key_password", "profile__ca_password")
        return qs

    show_full_result_count = False
    list_per_page = 100
    actions = ["approve_selected", "reject_selected"]
    readonly_fields = (
        "station",
        "device",
        "profile",
        "comment",
        "key_type",
        "public_key_fingerprint",
        "is_renewal",
        "status",
        "reason",
        "created_at",
        "decided_at",
        "decided_by",
        "decided_by_label",
        "issued_at",
        "csr_pem",
    )
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # stations submit requests through the API

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("signing.approve_onboardingrequest")

    @admin.display(description="device", ordering="device__name")
    def device_name(self, obj: OnboardingRequest) -> str:
        return obj.device.name

    @admin.display(description="certificate CN")
    def common_name(self, obj: OnboardingRequest) -> str:
        """The CN the certificate gets (from the rows the list already joins: no query)."""
        return cn_render(
            obj.profile.cn_template,
            station=obj.station.name,
            device=obj.device.name,
            serial="<serial>",
        )

    @admin.display(description="comment")
    def short_comment(self, obj: OnboardingRequest) -> str:
        return Truncator(obj.comment).chars(40)

    @admin.display(description="public key SHA-256")
    def short_fingerprint(self, obj: OnboardingRequest) -> str:
        fp = obj.public_key_fingerprint
        return f"{fp[:16]}…" if len(fp) > 16 else fp

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: OnboardingRequest) -> str:
        seconds = int((timezone.now() - obj.created_at).total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if seconds >= size:
                return f"{seconds // size} {unit}"
        return f"{seconds} s"

    @admin.display(description="decided")
    def decided(self, obj: OnboardingRequest) -> str:
        if obj.decided_at is None:
            return "—"
        who = obj.decided_by.get_username() if obj.decided_by else obj.decided_by_label
        return f"{who or 'system'}, {obj.decided_at:%Y-%m-%d %H:%M}"

    @admin.action(description="Approve selected requests", permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        handoffs_reset()
        approved = onboarding_requests_approve(ids=ids, actor=request.user)
        skipped = len(ids) - len(approved)
        self.message_user(
            request,
            f"Approved {plural(len(approved), 'request')}; signing runs in the background.",
            messages.SUCCESS,
        )
        handoffs_tell_admin(self, request)
        if skipped:
            self.message_user(
                request, f"{plural(skipped, 'request')} skipped (not pending).", messages.WARNING
            )

    @admin.action(description="Reject selected requests (with a reason)…", permissions=["approve"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet) -> Any:
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            ids = list(queryset.values_list("pk", flat=True))
            rejected = onboarding_requests_reject(
                ids=ids, reason=form.cleaned_data["reason"], actor=request.user
            )
            self.message_user(
                request, f"Rejected {plural(len(rejected), 'request')}.", messages.SUCCESS
            )
            if len(ids) > len(rejected):
                self.message_user(
                    request,
                    f"{plural(len(ids) - len(rejected), 'request')} skipped (not pending).",
                    messages.WARNING,
                )
            return None
        return reason_form_response(
            self,
            request,
            queryset,
            form=form,
            action="reject_selected",
            title="Reject onboarding requests",
            button="Reject",
        )
