from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    # First: every Genstore delivery resolves this URL, and patterns are tried in order.
    path("webhooks/", include("webhooks.urls")),  # /webhooks/genstore/
    path("webhooks/channels/", include("oma.channels.urls")),  # /webhooks/channels/<slug>/
    path("", include("oma.ops.urls")),  # /healthz, /healthz/live, /metrics
    path("admin/", admin.site.urls),
    path("track/", include("oma.merchant.urls")),
    path("notifications/", include("oma.notifications.urls")),  # /notifications/unsubscribe/<token>/
]
