"""Admin of alert channels (the webhook secret is write-only) and their alert states."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from portal.admin import ReadOnlyAdminMixin
from portal.models import AlertChannel, AlertState

from .alerts import alert_send_test
from .delivery import AlertDeliveryFailed
from .registry import condition_choices

SECRET_KEEP = "Leave empty to keep the stored secret."


class AlertChannelForm(forms.ModelForm):
    conditions = forms.MultipleChoiceField(
        choices=condition_choices, widget=forms.CheckboxSelectMultiple, required=False
    )
    webhook_url = forms.URLField(
        label="webhook URL", max_length=500, required=False, assume_scheme="https"
    )
    secret = forms.CharField(
        label="webhook secret",
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="Signs each webhook POST (HMAC-SHA256). Write-only: it is never shown again.",
    )

    class Meta:
        model = AlertChannel
        fields = [
            "name",
            "kind",
            "enabled",
            "email_to",
            "webhook_url",
            "secret",
            "conditions",
            "station_unseen_minutes",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.webhook_secret:
            self.fields["secret"].help_text += " " + SECRET_KEEP

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if kind == AlertChannel.Kind.EMAIL:
            addresses = [a.strip() for a in (data.get("email_to") or "").split(",") if a.strip()]
            if not addresses:
                self.add_error("email_to", "An email channel needs at least one recipient.")
            for address in addresses:
                try:
                    forms.EmailField().clean(address)
                except forms.ValidationError:
                    self.add_error("email_to", f"'{address}' is not an email address.")
        if kind == AlertChannel.Kind.WEBHOOK:
            if not data.get("webhook_url"):
                self.add_error("webhook_url", "A webhook channel needs a URL.")
            if not data.get("secret") and not (self.instance.pk and self.instance.webhook_secret):
                self.add_error("secret", "A webhook channel needs a secret to sign its messages.")
        return data

    def save(self, commit: bool = True) -> AlertChannel:
        channel = super().save(commit=False)
        if self.cleaned_data.get("secret"):
            channel.webhook_secret = self.cleaned_data["secret"]
        if commit:
            channel.save()
        return channel


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    form = AlertChannelForm
    list_display = ["name", "kind", "enabled", "target", "condition_count"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "email_to", "webhook_url"]
    actions = ["send_test"]

    @admin.display(description="sent to")
    def target(self, obj: AlertChannel) -> str:
        return obj.email_to if obj.kind == AlertChannel.Kind.EMAIL else obj.webhook_url

    @admin.display(description="conditions")
    def condition_count(self, obj: AlertChannel) -> int:
        return len(obj.conditions or [])

    @admin.action(description="Send test: a sample alert through the selected channels")
    def send_test(self, request: HttpRequest, queryset: QuerySet[AlertChannel]) -> None:
        for channel in queryset:
            try:
                alert_send_test(channel=channel)
            except AlertDeliveryFailed as exc:
                self.message_user(request, exc.detail, messages.ERROR)
            else:
                self.message_user(
                    request, f"Sent a test alert through '{channel}'.", messages.SUCCESS
                )


@admin.register(AlertState)
class AlertStateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "condition",
        "subject",
        "channel",
        "firing",
        "level",
        "summary",
        "first_fired_at",
        "cleared_at",
    ]
    list_filter = ["firing", "condition", "channel"]
    search_fields = ["subject", "summary"]
    list_select_related = ["channel"]
