from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

from portal.private_files import set_private_umask

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# The web server's files (uploads, caches) are the portal's alone, however it was started.
set_private_umask()
application = get_asgi_application()
