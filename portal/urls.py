"""URL routes: the admin, the versioned API and health."""
from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import path

from .api import api

admin.site.site_header = "Fleet onboarding portal"
admin.site.site_title = "Fleet onboarding portal"
admin.site.index_title = "Stations, certificates and AWS IoT"


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("healthz", healthz),
]
