"""Admin of the AWS IoT / JITP settings: the parameters, the read-only outputs and the
"Set up JITP" button (and action), which start the JITP job and open its job page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.sites.models import Site
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from portal.admin import SensitivePostAdminMixin
from portal.handoff import handoffs_reset, handoffs_tell_admin

from ..jobs.admin import job_link
from .models import JitpSettings
from .services import jitp_settings_get, jitp_setup_start

SETUP_BUTTON = "_setup_jitp"

# The settings' fields by the change page's sections.
AWS_FIELDS = ("access_key", "region", "role_arn")
CA_FIELDS = (
    "ca_source",
    "ca_alias",
    "ca_password",
    "ca_dn",
    "ca_key_type",
    "ca_validity_days",
    "overwrite_ca",
)
TEMPLATE_FIELDS = (
    "template_name",
    "thing_type_name",
    "thing_groups",
    "billing_group",
    "attributes",
    "policy_mode",
    "certificate_mode",
)


class JitpSettingsForm(forms.ModelForm):
    """The CA password is write-only: never rendered back, kept when left empty."""

    ca_password = forms.CharField(
        label="CA password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Protects (generate) or opens (existing CA) the CA's private key. "
        "Leave empty to keep the stored password.",
    )

    class Meta:
        model = JitpSettings
        fields = [*AWS_FIELDS, *CA_FIELDS, *TEMPLATE_FIELDS]
        widgets = {"role_arn": forms.TextInput(attrs={"size": 70, "autocomplete": "off"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stored = bool(self.instance and self.instance.pk and self.instance.ca_password)
        self.fields["ca_password"].help_text += (
            " A password is stored." if stored else " No password is stored yet."
        )

    def clean_ca_password(self) -> str:
        value = self.cleaned_data.get("ca_password") or ""
        if not value and self.instance and self.instance.pk:
            return self.instance.ca_password or ""
        return value


@admin.register(JitpSettings)
class JitpSettingsAdmin(SensitivePostAdminMixin, admin.ModelAdmin):
    sensitive_post_parameters = ("ca_password", "role_arn")
    form = JitpSettingsForm
    list_display = [
        "__str__",
        "registered_ca_alias",
        "aws_ca_certificate_id",
        "data_endpoint",
        "last_run_at",
        "last_result",
    ]
    list_select_related = ["site", "last_job"]
    actions = ["setup_jitp"]
    change_form_template = "admin/provisioning/jitpsettings/change_form.html"
    readonly_fields = (
        "registered_ca_alias",
        "aws_ca_certificate_id",
        "data_endpoint",
        "last_run_at",
        "last_result",
        "last_job_link",
    )
    fieldsets = [
        ("AWS", {"fields": AWS_FIELDS}),
        (
            "CA",
            {"fields": CA_FIELDS},
        ),
        (
            "Provisioning template",
            {"fields": TEMPLATE_FIELDS},
        ),
        ("Results (written by the JITP job)", {"fields": list(readonly_fields)}),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # one row per site, created on first visit of the list

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_run_jitp_setup_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("provisioning.run_jitp_setup")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        jitp_settings_get()
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[JitpSettings]:
        return super().get_queryset(request).filter(site=Site.objects.get_current())

    @admin.display(description="last job")
    def last_job_link(self, obj: JitpSettings) -> str:
        return job_link(obj.last_job)

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        context["can_run_jitp_setup"] = self.has_run_jitp_setup_permission(request)
        context["setup_button_name"] = SETUP_BUTTON
        return super().render_change_form(request, context, *args, **kwargs)

    def response_change(self, request: HttpRequest, obj: JitpSettings) -> HttpResponse:
        if SETUP_BUTTON in request.POST:
            if not self.has_run_jitp_setup_permission(request):
                self.message_user(request, "You may not run the JITP setup.", messages.ERROR)
                return HttpResponseRedirect(request.path)
            return self._start(request)
        return super().response_change(request, obj)

    @admin.action(
        description="Set up JITP (register the CA with AWS IoT)", permissions=["run_jitp_setup"]
    )
    def setup_jitp(self, request: HttpRequest, queryset: QuerySet[JitpSettings]) -> Any:
        return self._start(request)

    def _start(self, request: HttpRequest) -> HttpResponse:
        handoffs_reset()
        job = jitp_setup_start(actor=request.user)
        self.message_user(
            request, f"JITP setup job #{job.pk} started; its log follows below.", messages.SUCCESS
        )
        handoffs_tell_admin(self, request)
        return HttpResponseRedirect(reverse("admin:provisioning_job_change", args=[job.pk]))
