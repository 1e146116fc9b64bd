from django.urls import path

from webhooks import views

app_name = "webhooks"

urlpatterns = [
    path("genstore/", views.genstore_webhook, name="genstore"),
]
