from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "oma.notifications"
    label = "notifications"
    verbose_name = "Customer notifications"
