"""What other apps may hear of a suspension, without suspension_app knowing them.

- :data:`suspension_imposed`: a suspension came into force, sent once its transaction
  committed (``user_id``; the sender is :class:`suspension_app.models.Suspension`).
  ``sessions_app.receivers`` stops the user's active session.

Sent after the commit, so a receiver acts only on a suspension that exists; one that fails is
logged by Django's robust ``on_commit`` and never undoes the suspension.
"""

from __future__ import annotations

from django.dispatch import Signal

suspension_imposed = Signal()
