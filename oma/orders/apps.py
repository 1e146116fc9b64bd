from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "oma.orders"
    label = "orders"
