"""Admin form of the fleet install ("Install AWS MQTT device" on the stations changelist)."""

from __future__ import annotations

from django import forms
from django.conf import settings

from devices.models import Station
from signing.models import SigningProfile


class FleetInstallForm(forms.Form):
    """Parameters of "Install AWS MQTT device"; validation itself is the service's."""

    stations = forms.ModelMultipleChoiceField(
        queryset=Station.objects.order_by("name"),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 12}),
        error_messages={
            "invalid_choice": "Unknown station: %(value)s.",
            "invalid_pk_value": "Unknown station: %(pk)s.",
        },
    )
    device_name = forms.CharField(
        max_length=63,
        initial="aws",
        required=False,
        help_text="The same MQTT device name on every station.",
    )
    profile = forms.ModelChoiceField(
        queryset=SigningProfile.objects.order_by("name"), required=False, label="Signing profile"
    )
    endpoint = forms.CharField(
        max_length=253,
        required=False,
        label="Broker endpoint",
        help_text="The AWS IoT data (ATS) endpoint.",
    )
    port = forms.IntegerField(initial=8883, min_value=1, max_value=65535)
    key_password = forms.CharField(
        label="Certificate password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Protects the device key on each station (at least 8 characters). "
        "Write-only: never shown again.",
    )
    comment = forms.CharField(
        max_length=200,
        required=False,
        label="Onboarding comment",
        help_text="Shown against each CSR in the approval queue.",
    )
    concurrency = forms.IntegerField(
        min_value=1,
        label="Concurrency cap",
        help_text="Stations between placement and CSR at once.",
    )
    timeout_hours = forms.IntegerField(
        min_value=1,
        max_value=24 * 90,
        label="Timeout (hours)",
        help_text="Stations not connected by then are failed.",
    )
    dry_run = forms.BooleanField(
        required=False, help_text="Only show what would be created or changed."
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["concurrency"].initial = settings.FLEET_INSTALL_DEFAULT_CONCURRENCY
        self.fields["timeout_hours"].initial = settings.FLEET_INSTALL_DEFAULT_TIMEOUT_HOURS
