"""The access policy's group (settings.ACCESS_GROUP, "staff" by default) on a new installation:
without it an operator has nothing to admit a person to, and a new local user meets "This
service is not open to you". Members are added in the admin (Users, action "Grant portal
access"). A later change of ACCESS_GROUP: runportal and that action create the new group
(accounts_app/access_group.py); the old group's members are not moved."""

from django.conf import settings
from django.db import migrations


def create_access_group(apps, schema_editor):
    name = settings.ACCESS_GROUP
    if name:  # empty: the portal is open to everyone who signs in, no group needed
        apps.get_model("auth", "Group").objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts_app", "0003_sign_in_failures"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    # Reversed, the group stays: it may have members, and deleting it would shut them out.
    operations = [migrations.RunPython(create_access_group, migrations.RunPython.noop)]
