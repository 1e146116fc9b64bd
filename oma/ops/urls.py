from django.urls import path

from oma.ops import views

app_name = "ops"

# No trailing slash: these are exempt from the HTTPS redirect (settings.SECURE_REDIRECT_EXEMPT) so that probes
# inside the private network can use plain HTTP.
urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("healthz/live", views.live, name="live"),
    path("metrics", views.metrics, name="metrics"),
]
