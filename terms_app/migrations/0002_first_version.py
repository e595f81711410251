from django.db import migrations
from django.utils import timezone

BODY = """\
By launching a session of the ECMWF Data Store Service JupyterHub you agree to these terms.
The operator replaces this text in the admin ("Terms versions") with its own.

1. **Experimental service.** The service is experimental, open to the operator's staff only,
   and may change based on real usage.
2. **Time-limited sessions.** You may run one session at a time. When its time is up, the
   session is stopped together with any processing in it.
3. **Fair usage.** Sessions are small and not meant for large computations; small sessions
   are prioritised when resources are short.
4. **Private storage** (1 GB) is only accessible to you and is removed if you do not use the
   service for 31 days. Back up your work, for example in a git repository.
5. **Scratch storage** (100 GB quota) is temporary: over quota your largest files are removed,
   and when the shared scratch is full the least recently modified files are removed.
   Trying to circumvent these cleanups is treated as malicious.
6. **No SSH** connections leave the sessions; use HTTPS for git.
7. **Suspension.** Access may be suspended, automatically or by staff, when these terms are
   broken, and is reinstated only after an investigation.
"""


def publish_first_version(apps, schema_editor):
    TermsVersion = apps.get_model("terms_app", "TermsVersion")
    TermsVersion.objects.get_or_create(
        version="1",
        defaults={
            "title": "Terms of Use for the ECMWF Data Store Service JupyterHub",
            "body": BODY,
            "published_at": timezone.now(),
        },
    )


class Migration(migrations.Migration):
    dependencies = [("terms_app", "0001_initial")]

    operations = [migrations.RunPython(publish_first_version, migrations.RunPython.noop)]
