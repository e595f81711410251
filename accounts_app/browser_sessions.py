"""Ending a user's browser sessions (a staff reset of their second factor).

Sessions are Django's, in the database (``SESSION_ENGINE``: the database back-end, or the
cached one in front of it); a row does not say whose it is, so the live ones are read and
decoded. That costs a pass over the live sessions of everyone, fine for a staff action that
happens a few times a year, and it needs no record of session keys beside Django's own
(whose keys change at each sign-in and second factor).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

# Rows decoded per database round trip.
_BATCH = 500


def _session_store() -> Any:
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if not hasattr(store, "get_model_class"):
        raise ImproperlyConfigured(
            "Ending a user's browser sessions needs database sessions (SESSION_ENGINE "
            f"django.contrib.sessions.backends.db or cached_db), not {settings.SESSION_ENGINE}."
        )
    return store


def user_sessions_end(user: AbstractBaseUser) -> int:
    """Delete every live browser session signed in as ``user``; returns how many."""
    store = _session_store()
    owner = str(user.pk)
    keys = []
    live = store.get_model_class().objects.filter(expire_date__gt=timezone.now())
    for key, data in live.values_list("session_key", "session_data").iterator(_BATCH):
        # decode() gives {} for data it cannot read (a changed SECRET_KEY): nobody's.
        if str(store().decode(data).get(SESSION_KEY)) == owner:
            keys.append(key)
    for key in keys:
        store(session_key=key).delete()  # the cached back-end forgets it too
    return len(keys)
