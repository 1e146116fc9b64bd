from django.urls import path

from oma.merchant import views

app_name = "track"

urlpatterns = [
    path("", views.track_lookup, name="lookup"),
    path("logo/<int:store_id>/<str:digest>/", views.track_logo, name="logo"),
    path("<str:token>/", views.track_order, name="order"),
]
