"""Replaces "django.contrib.admin" in INSTALLED_APPS: the same admin, with OMA's tenant-scoped site as default.

Kept apart from oma.merchant.admin_site because an AppConfig module is imported before the models are ready.
"""

from django.contrib.admin.apps import AdminConfig


class OmaAdminConfig(AdminConfig):
    default_site = "oma.merchant.admin_site.OmaAdminSite"
