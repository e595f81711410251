from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0008_session_view_metrics_permission"),
    ]

    operations = [
        migrations.AddField(
            model_name="session",
            name="log_tail",
            field=models.TextField(
                blank=True,
                help_text="The last lines of the server's log when the session ended, as its "
                "owner may read them: local paths cut to the file name, URLs to their path (no "
                "token), control characters removed (sessions_app/history.py).",
            ),
        ),
    ]
