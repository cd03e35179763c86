"""Template tags for the admin: the health warnings shown on the index page."""

from __future__ import annotations

from django import template
from django.db import DatabaseError
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from portal.health import admin_warnings

register = template.Library()


def _ca_expiry_items() -> list[tuple[str, str, str]]:
    """(sentence, Rotate CA link, link text) per CA inside an expiry warning threshold."""
    from signing.services import ca_expiry_notices

    try:
        notices = ca_expiry_notices()
    except DatabaseError:
        return []
    items = []
    for notice in notices:
        try:
            url = reverse("admin:provisioning_carotation_rotate", args=[notice.ca_id])
        except NoReverseMatch:
            url = reverse("admin:signing_certificateauthority_change", args=[notice.ca_id])
        items.append((notice.sentence, url, f"Rotate CA '{notice.alias}'"))
    return items


@register.simple_tag
def portal_warnings() -> SafeString | str:
    """Render the health problems and CA-expiry warnings as the admin's warning messages;
    each CA warning links to that CA's Rotate CA page."""
    warnings = admin_warnings()
    ca_items = _ca_expiry_items()
    if not warnings and not ca_items:
        return ""
    items = format_html_join("", '<li class="warning">{}</li>', ((w,) for w in warnings))
    ca_html = format_html_join("", '<li class="warning">{} <a href="{}">{}</a></li>', ca_items)
    return format_html('<ul class="messagelist portal-health">{}{}</ul>', items, ca_html)
