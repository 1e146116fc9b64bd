from django.apps import AppConfig


class SandboxConfig(AppConfig):
    name = "oma.sandbox"
    label = "sandbox"
    verbose_name = "Genstore sandbox"
