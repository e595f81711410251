"""The default terms are the terms, not a note to the operator (issue 15).

Version 1 as 0002 published it began with "The operator replaces this text in the admin…",
and users agreed to that sentence. Where version 1 still holds exactly that placeholder it is
replaced by the text below; a version the operator wrote or edited is left alone. The note
to the operator now lives in the body field's help text, shown in the admin.
"""

from django.db import migrations, models

PLACEHOLDER = """\
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

BODY = """\
These terms apply to every session you launch on the ECMWF Data Store Service (DSS)
JupyterHub. By launching a session you agree to them.

1. **Experimental service.** The service is experimental and currently open to ECMWF staff
   only. What it offers (environments, resources, storage) may change as we learn from real
   use, and it may be unavailable at times.
2. **Your account.** Sign in with your own ECMWF credentials and second factor, and do not
   share your account, your API tokens or your sessions with anyone.
3. **Acceptable use.** Use the service for work with the data of the Data Stores (CDS, ADS,
   EWDS) and related analysis and visualisation. Do not use it for unrelated computing (for
   example crypto-currency mining), to attack or scan other systems, or for anything
   unlawful.
4. **Small, time-limited sessions.** You may run one session at a time. Sessions are small and
   not meant for large computations; small sessions are prioritised when resources are short.
   When a session's time is up it is stopped, together with any processing running in it.
   Save your work before then.
5. **Private storage** (1 GB) is accessible only to you. It is removed if you do not start a
   session for 31 days. Keep copies of anything that matters, for example in a git
   repository.
6. **Scratch storage** (100 GB quota) is temporary. Over your quota, your largest files are
   removed; when the shared scratch is full, the least recently modified files are removed.
   Trying to circumvent these cleanups is treated as malicious use.
7. **Network.** Sessions allow no SSH connections; use HTTPS to clone git repositories.
8. **Suspension.** We may suspend your access, automatically or by a decision of our staff,
   when we detect that these terms are broken. A suspension is lifted only after we have
   investigated; the suspension page and e-mail say how to appeal.
9. **No warranty.** The service is provided as is, without any guarantee of availability or
   that your files are kept. ECMWF is not liable for lost work or data.
10. **Changes.** We may change these terms. A new version is shown on the launcher and you
    accept it before your next session.
"""


def replace_placeholder(apps, schema_editor):
    TermsVersion = apps.get_model("terms_app", "TermsVersion")
    TermsVersion.objects.filter(version="1", body=PLACEHOLDER).update(body=BODY)


def restore_placeholder(apps, schema_editor):
    TermsVersion = apps.get_model("terms_app", "TermsVersion")
    TermsVersion.objects.filter(version="1", body=BODY).update(body=PLACEHOLDER)


class Migration(migrations.Migration):
    dependencies = [("terms_app", "0002_first_version")]

    operations = [
        migrations.AlterField(
            model_name="termsversion",
            name="body",
            field=models.TextField(
                help_text=(
                    "The terms users agree to before launching, in Markdown. A new installation "
                    "publishes a default text (version 1) written from the service page. To "
                    "replace it, add a new version with your own text and set its publication "
                    "time: the latest published version is the current one, and everyone "
                    "accepts it before their next launch. A published version can no longer be "
                    "edited: it is what people agreed to."
                )
            ),
        ),
        migrations.RunPython(replace_placeholder, restore_placeholder),
    ]
