from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("oma.ops.urls")),  # /healthz, /healthz/live, /metrics
    path("admin/", admin.site.urls),
    # Before the webhooks app's include: /webhooks/channels/<slug>/ is ours, the rest of /webhooks/ is theirs.
    path("webhooks/channels/", include("oma.channels.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("track/", include("oma.merchant.urls")),
]
