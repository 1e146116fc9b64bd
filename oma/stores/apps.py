from django.apps import AppConfig


class StoresConfig(AppConfig):
    name = "oma.stores"
    label = "stores"
