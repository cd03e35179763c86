"""Template tags for the admin: the health warnings shown on the index page and the rows of
fleet-sized changelists."""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib.admin.templatetags.base import InclusionAdminNode
from django.db import DatabaseError
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from portal.admin_rows import fleet_result_list
from portal.health import admin_warnings

register = template.Library()


@register.tag(name="fleet_result_list")
def fleet_result_list_tag(parser: template.base.Parser, token: template.base.Token) -> Any:
    """``{% fleet_result_list cl %}``: Django's ``result_list`` with the rows of
    portal.admin_rows (same template, same HTML)."""
    # django-stubs declares a ``name`` first; Django 5 takes (parser, token, func, ...).
    node: Any = InclusionAdminNode
    return node(
        parser,
        token,
        func=fleet_result_list,
        template_name="change_list_results.html",
        takes_context=False,
    )


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
