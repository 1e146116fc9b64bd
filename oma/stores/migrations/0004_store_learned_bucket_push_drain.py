"""Genstore's bucket is learned unless a store pins it (both figures null = learn); stores still at the old default
(40 at 2/s) learn from now on, figures someone set stay pinned. The fulfillment push drain's queue stamp and lease."""

from django.db import migrations, models


def learn_where_default(apps, schema_editor):
    Store = apps.get_model("stores", "Store")
    Store.objects.filter(rate_limit_capacity=40, rate_limit_refill_per_second=2.0).update(
        rate_limit_capacity=None, rate_limit_refill_per_second=None
    )


def default_where_learned(apps, schema_editor):
    Store = apps.get_model("stores", "Store")
    Store.objects.filter(rate_limit_capacity__isnull=True).update(rate_limit_capacity=40)
    Store.objects.filter(rate_limit_refill_per_second__isnull=True).update(rate_limit_refill_per_second=2.0)


class Migration(migrations.Migration):

    dependencies = [
        ("stores", "0003_store_api_base_url_help"),
    ]

    operations = [
        migrations.AddField(
            model_name="store",
            name="push_drain_queued_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="store",
            name="push_drain_token",
            field=models.CharField(blank=True, db_default="", default="", editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="store",
            name="push_drain_until",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="store",
            name="rate_limit_capacity",
            field=models.PositiveIntegerField(
                blank=True, help_text="Pins the Genstore bucket (with the refill); blank: learned from Genstore",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="store",
            name="rate_limit_refill_per_second",
            field=models.FloatField(
                blank=True, help_text="Tokens a second (with the capacity); blank: learned from Genstore", null=True
            ),
        ),
        migrations.RunPython(learn_where_default, default_where_learned),
        migrations.AddConstraint(
            model_name="store",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("rate_limit_capacity__isnull", True), ("rate_limit_refill_per_second__isnull", True)),
                    models.Q(("rate_limit_capacity__gte", 1), ("rate_limit_refill_per_second__gt", 0)),
                    _connector="OR",
                ),
                name="store_rate_limit_pinned_whole",
                violation_error_message="Pin the rate limit with both a capacity and a refill above 0, or leave both "
                "blank to learn them from Genstore.",
            ),
        ),
    ]
