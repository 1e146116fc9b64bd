"""Admin labels read as English: no model's plural is a naive "s" after s, sh, ch or x ("Fulfillment pushs")."""

from __future__ import annotations

import re

from django.apps import apps

NAIVE_PLURAL = re.compile(r"(?:s|sh|ch|x)s$")


def test_no_plural_label_is_a_naive_s():
    naive = [
        f"{model._meta.label}: {model._meta.verbose_name_plural!r}"
        for model in apps.get_models()
        if NAIVE_PLURAL.search(str(model._meta.verbose_name_plural))
        and str(model._meta.verbose_name_plural) == f"{model._meta.verbose_name}s"
    ]
    assert naive == []


def test_the_fulfillment_push_list_is_called_fulfillment_pushes():
    assert apps.get_model("fulfillment", "FulfillmentPush")._meta.verbose_name_plural == "fulfillment pushes"


def test_the_tracking_file_uploads_are_called_csv_imports():
    meta = apps.get_model("channels", "CsvImport")._meta
    assert (meta.verbose_name, meta.verbose_name_plural) == ("CSV import", "CSV imports")
