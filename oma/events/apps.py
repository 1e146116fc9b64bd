from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "oma.events"
    label = "events"
    verbose_name = "Outbound events"
