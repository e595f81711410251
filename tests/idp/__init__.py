"""A real OpenID Connect provider (django-oidc-provider) that the tests start on 127.0.0.1.

It is a separate Django project with its own settings and SQLite database, run in a
subprocess so that the portal under test talks to it over HTTP exactly as it would to a
production identity provider. ``provider.py`` holds the handle and the pytest fixture.
"""

# The header that carries the per-run secret of the control endpoints; shared by the
# provider process (``control.py``) and the handle (``provider.py``).
CONTROL_SECRET_HEADER = "X-IdP-Control-Secret"
