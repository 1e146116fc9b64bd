from django.apps import AppConfig


class MerchantConfig(AppConfig):
    name = "oma.merchant"
    label = "merchant"
    verbose_name = "Merchant tools"
