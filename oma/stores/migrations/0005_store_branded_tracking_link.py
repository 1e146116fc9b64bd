"""The branded tracking link setting: on for stores connected from now on, off for the stores already connected
(their customers' Genstore order pages keep the carrier's link until the merchant turns it on)."""

from django.db import migrations, models

HELP_TEXT = (
    "Push OMA's tracking page (/track/…, on OMA_PUBLIC_URL) as the fulfillment's tracking link instead of the "
    "carrier's page; the page still links to the carrier. Pushed fulfillments get it on their next push."
)


class Migration(migrations.Migration):

    dependencies = [
        ("stores", "0004_store_learned_bucket_push_drain"),
    ]

    operations = [
        # Existing rows are filled with False; the model's default (new stores) is True.
        migrations.AddField(
            model_name="store",
            name="branded_tracking_link",
            field=models.BooleanField(default=False, help_text=HELP_TEXT, verbose_name="branded tracking link"),
        ),
        migrations.AlterField(
            model_name="store",
            name="branded_tracking_link",
            field=models.BooleanField(
                db_default=True, default=True, help_text=HELP_TEXT, verbose_name="branded tracking link"
            ),
        ),
    ]
