"""Admin forms of the devices app: station add/change, CSV import."""

from __future__ import annotations

from django import forms

from .models import Station


class TagsField(forms.CharField):
    """Tags typed as 'a, b; c', stored as a list."""

    def prepare_value(self, value: object) -> object:
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value: object) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [t.strip() for t in text.replace(";", ",").split(",") if t.strip()]


class StationForm(forms.ModelForm):
    tags = TagsField(required=False, help_text="Comma-separated.")

    class Meta:
        model = Station
        fields = ["name", "description", "site", "tags"]


class StationCsvImportForm(forms.Form):
    file = forms.FileField(
        help_text="UTF-8 CSV with a header line: name (required), description, site, tags "
        "(tags separated by ';'). All rows are imported, or none.",
    )

    enrollment_codes = forms.BooleanField(
        required=False,
        label="Create enrolment codes",
        help_text="Show a one-time enrolment code per station (for `fleet-agent enroll`) "
        "instead of its API token.",
    )

    MAX_BYTES = 2 * 1024 * 1024

    def clean_file(self) -> object:
        upload = self.cleaned_data["file"]
        if upload.size > self.MAX_BYTES:
            raise forms.ValidationError("The file is larger than 2 MB; split it.")
        return upload
