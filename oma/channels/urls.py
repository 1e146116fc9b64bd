from django.urls import path

from oma.channels import views

app_name = "channels"

urlpatterns = [
    path("<slug:slug>/", views.channel_webhook, name="webhook"),
]
