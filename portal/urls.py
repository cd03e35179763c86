"""URL routes: the admin, the versioned API, health and the Prometheus metrics."""

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import path, re_path

from .api import api
from .cockpit.metrics import metrics_view

admin.site.site_header = "Fleet onboarding portal"
admin.site.site_title = "Fleet onboarding portal"
admin.site.index_title = "Stations, certificates and AWS IoT"


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def api_not_found(request: HttpRequest, rest: str) -> JsonResponse:
    """Any path under /api/v1/ that no endpoint serves: the API's error shape, not HTML."""
    return JsonResponse(
        {"code": "not_found", "detail": "There is no API endpoint at this path."}, status=404
    )


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    re_path(r"^api/v1/(?P<rest>.*)$", api_not_found),
    path("healthz", healthz),
    path("metrics", metrics_view, name="metrics"),
]
