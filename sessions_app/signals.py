"""What other apps may hear of a session's life, without sessions_app knowing them.

- :data:`session_launched`: a user launched it (a new queued row). Sent by
  :func:`sessions_app.services.session_launch` inside the launch's transaction, with
  ``session_id`` (str), ``user`` and ``launched_at``: ``storage_app.receivers`` keeps the
  user's private storage there (service rule 7), under the storage account's row lock, which
  the retention sweep waits on. A receiver that fails makes the launch fail.

Sent by :func:`sessions_app.transitions.transition`, inside the writing transaction, once the
conditional change was made (so once per session and event, however many workers tried):

- :data:`session_started`: its server answers (starting → running);
- :data:`session_ended`: it ended (stopped, expired or failed; also a queued one that left the
  queue).

Both carry ``session_id`` (str), ``user_id`` and ``state`` (the new state); the sender is
:class:`sessions_app.models.Session`. A receiver that sends work elsewhere does it with
``transaction.on_commit``: the change may still be rolled back. Receivers must be quick and
must not fail: they run in the worker's or the request's own transaction
(``storage_app.receivers`` measures the owner's storage after each).
"""

from __future__ import annotations

from django.dispatch import Signal

session_launched = Signal()
session_started = Signal()
session_ended = Signal()
