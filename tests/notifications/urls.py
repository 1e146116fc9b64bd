"""The project's URLs with the unsubscribe link's included, for as long as oma/urls.py does not include it."""

from django.urls import include, path

from oma.urls import urlpatterns as project_urlpatterns

urlpatterns = list(project_urlpatterns)
if not any(getattr(pattern, "namespace", None) == "notifications" for pattern in urlpatterns):
    urlpatterns.append(path("notifications/", include("oma.notifications.urls")))
