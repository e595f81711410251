"""The scratch lease: one scratch cleanup at a time, across workers.

Two overlapping cleanups would each count only their own removals and together remove more
than the rules select. So a real cleanup (the per-user quota, the shared maximum, the sweep that
runs both) holds the ``scratch`` row of :class:`~storage_app.models.StorageLock`, taken by a
conditional UPDATE of an expired row or a unique INSERT, and renewed as it goes; a holder that
stopped working (a lost worker) loses it after :data:`LOCK_LEASE`. A dry run removes nothing and
takes no lease.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from storage_app.models import StorageLock

# Renewed after every user and every batch of removals, so only a holder that stopped working
# (a lost worker) loses it.
LOCK_LEASE = timedelta(minutes=30)
SCRATCH_LOCK = "scratch"


class StorageBusy(Exception):
    """Another scratch cleanup holds the lease (or this one lost it): try again later."""


@dataclass
class Lease:
    """A lease this process holds; :meth:`renew` it as the work goes on."""

    name: str
    holder: str

    def renew(self) -> None:
        """Extend the lease, or raise :class:`StorageBusy` if another holder took it over."""
        renewed = StorageLock.objects.filter(name=self.name, holder=self.holder).update(
            expires_at=timezone.now() + LOCK_LEASE
        )
        if not renewed:
            raise StorageBusy(f"The {self.name} cleanup lease was lost (taken over after expiry).")


@contextmanager
def scratch_lease(dry_run: bool) -> Iterator[Lease | None]:
    """Hold the scratch lease for a real cleanup (None for a dry run, which needs none).

    Raises :class:`StorageBusy` when another cleanup holds it.
    """
    if dry_run:
        yield None
        return
    now = timezone.now()
    lease = Lease(SCRATCH_LOCK, uuid.uuid4().hex)
    expires_at = now + LOCK_LEASE
    taken = StorageLock.objects.filter(name=lease.name, expires_at__lt=now).update(
        holder=lease.holder, expires_at=expires_at
    )
    if not taken:
        try:
            with transaction.atomic():
                StorageLock.objects.create(
                    name=lease.name, holder=lease.holder, expires_at=expires_at
                )
        except IntegrityError:
            raise StorageBusy(
                "Another storage cleanup is running; try again when it has finished."
            ) from None
    try:
        yield lease
    finally:
        StorageLock.objects.filter(name=lease.name, holder=lease.holder).delete()
