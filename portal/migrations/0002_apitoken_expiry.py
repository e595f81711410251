# API tokens expire, and say why they were revoked.

from datetime import timedelta

from django.db import migrations, models
from django.utils import timezone

# Tokens made before tokens expired get the default lifetime from now, not from when they were
# made: scripts that use an old token keep working for that long instead of stopping at once.
EXISTING_TOKENS_DAYS = 90


def give_existing_tokens_a_deadline(apps, schema_editor):
    ApiToken = apps.get_model("portal", "ApiToken")
    deadline = timezone.now() + timedelta(days=EXISTING_TOKENS_DAYS)
    ApiToken.objects.filter(expires_at__isnull=True).update(expires_at=deadline)


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.RunPython(give_existing_tokens_a_deadline, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(help_text="The token stops working at this time."),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="revoked_because",
            field=models.CharField(
                blank=True,
                choices=[
                    ("owner", "by its owner"),
                    ("staff", "by staff"),
                    ("password_changed", "the password changed"),
                    ("second_factor_reset", "staff reset the second factor"),
                    ("suspended", "a rule suspended the account"),
                ],
                default="",
                max_length=32,
            ),
        ),
    ]
