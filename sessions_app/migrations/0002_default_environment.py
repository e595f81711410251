from django.db import migrations


def create_default_environment(apps, schema_editor):
    Environment = apps.get_model("sessions_app", "Environment")
    Environment.objects.get_or_create(
        slug="ecmwf-dss",
        defaults={
            "name": "ECMWF Data Store Service",
            "use_case": "Some small data processing, e.g. data averaging of small files",
            "memory_mb": 4096,
            "cpus": 2,
            "max_duration_minutes": 300,
            "priority": 10,
            "enabled": True,
            "order": 0,
            "image": "",
            "command": [],
        },
    )


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0001_initial")]

    operations = [migrations.RunPython(create_default_environment, migrations.RunPython.noop)]
