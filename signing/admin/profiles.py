"""Admin of signing profiles; the CA password is write-only and checked against the CA."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from portal.admin import SensitivePostAdminMixin

from ..crypto import KEY_TYPE_CHOICES
from ..models import SigningProfile, default_accepted_key_types
from ..services import signing_profile_save, signing_profile_validate
from .common import CaExpiryWarningMixin

# The certificate subject's parts a profile sets, in the order the change page shows them.
SUBJECT_FIELDS = (
    "cn_template",
    "country",
    "organization",
    "organizational_unit",
    "locality",
    "state",
    "dn_qualifier",
    "serial_number",
)


class SigningProfileForm(forms.ModelForm):
    """The CA password is write-only: never rendered, blank on change keeps the stored one."""

    ca_password_input = forms.CharField(
        label="CA password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Checked against the CA's private key. Leave blank to keep the stored one.",
    )
    accepted_key_types = forms.MultipleChoiceField(
        choices=KEY_TYPE_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        # A declared field does not inherit the model default: without this the add form
        # starts with no box ticked and refuses to save until someone ticks them by hand.
        initial=default_accepted_key_types,
        help_text="Device key types this profile signs (RSA below 2048 bits never).",
    )

    class Meta:
        model = SigningProfile
        fields = [
            "name",
            "is_default",
            "ca",
            *SUBJECT_FIELDS,
            "validity_days",
            "renew_at_percent",
            "renewal_jitter_percent",
            "accepted_key_types",
            "renewal_policy",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.instance.pk is None and not data.get("ca_password_input"):
            self.add_error("ca_password_input", "Enter the CA's password.")
        return data

    def _post_clean(self) -> None:
        """After the instance holds the form's values: the service's rules (CA password too)."""
        super()._post_clean()  # type: ignore[misc]
        if self.errors:
            return
        try:
            signing_profile_validate(
                profile=self.instance,
                ca_password=self.cleaned_data.get("ca_password_input") or None,
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                target = "ca_password_input" if field == "ca_password" else field
                for error in errors:
                    self.add_error(target if target in self.fields else None, error)


@admin.register(SigningProfile)
class SigningProfileAdmin(SensitivePostAdminMixin, CaExpiryWarningMixin, admin.ModelAdmin):
    sensitive_post_parameters = ("ca_password_input",)
    form = SigningProfileForm
    list_display = [
        "name",
        "ca",
        "cn_template",
        "country",
        "validity_days",
        "renewal_policy",
        "is_default",
    ]
    list_select_related = ["ca"]
    search_fields = ["name", "ca__alias"]
    fieldsets = [
        (None, {"fields": ["name", "is_default", "ca", "ca_password_input"]}),
        (
            "Subject",
            {
                "fields": SUBJECT_FIELDS,
                "description": "The subject of every certificate comes from here, never "
                "from the CSR. CN template placeholders: {station}, "
                "{device}, {serial}; it must contain {device} and "
                "{station} or {serial}.",
            },
        ),
        (
            "Validity and renewal",
            {
                "fields": [
                    "validity_days",
                    "renew_at_percent",
                    "renewal_jitter_percent",
                    "renewal_policy",
                ]
            },
        ),
        ("Keys", {"fields": ["accepted_key_types"]}),
    ]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # profiles are referenced by requests and certificates

    def save_model(
        self, request: HttpRequest, obj: SigningProfile, form: Any, change: bool
    ) -> None:
        signing_profile_save(
            profile=obj,
            ca_password=form.cleaned_data.get("ca_password_input") or None,
            actor=request.user,
        )
