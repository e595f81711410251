"""Password sign-in throttling: per account name and per client address, a doubling wait.

The second factor's codes are throttled by django-otp (each wrong code doubles the wait); a
password gets the same rule, kept in the database beside the password itself (a database
that does not answer stops the sign-in anyway, so the throttle never fails open):

- per account name as typed (existing or not, so that the answer tells nothing about which
  accounts exist): after n wrong passwords the next attempt waits 2^(n-1) seconds;
- per client address (``portal.client_ip``): the same, once the address has had
  ``SIGN_IN_ADDRESS_FREE_FAILURES`` wrong passwords (people behind one NAT share it).

Both waits are capped at ``SIGN_IN_MAX_WAIT_SECONDS``, and failures are forgotten an hour after
the last one. An attempt is counted as a failure *before* the password is checked and taken
back when it was right: parallel guesses cannot slip through together, and an attempt that
has to wait is refused without running the password hasher (about 0.4 CPU-seconds), so a
guess costs the portal at most one hash per wait. The right password is refused too while
the wait lasts.
"""

from __future__ import annotations

import hashlib
import logging
import math
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts_app.models import SignInFailures

log = logging.getLogger(__name__)

# A key whose last failure is older than this (and whose wait is over) starts again from zero.
FORGET_AFTER = timedelta(hours=1)

Scope = SignInFailures.Scope


class SignInThrottled(Exception):
    """The attempt must wait ``wait_seconds`` (whole seconds, at least one)."""

    def __init__(self, wait_seconds: int) -> None:
        super().__init__(f"Too many wrong passwords: wait {wait_seconds} seconds.")
        self.wait_seconds = wait_seconds


@dataclass(frozen=True)
class SignInAttempt:
    """An attempt counted as a failure until :func:`sign_in_attempt_succeeded` says not."""

    keys: tuple[tuple[str, str], ...]  # (scope, key)
    # Per key: what the attempt set (its wait's end) and what it replaced (the last failure).
    marks: tuple[tuple[datetime, datetime], ...] = ()


def _account_key(username: str) -> str:
    # The form compares names exactly, but "Alice" and "alice " are one person's guesses.
    typed = unicodedata.normalize("NFKC", username).strip().casefold()
    return hashlib.sha256(typed.encode()).hexdigest()


def _wait(scope: str, failures: int) -> timedelta:
    """The wait after ``failures`` wrong passwords: 1 s, 2 s, 4 s, … (django-otp's rule)."""
    if scope == Scope.ADDRESS:
        failures -= settings.SIGN_IN_ADDRESS_FREE_FAILURES
    if failures <= 0:
        return timedelta(0)
    cap = settings.SIGN_IN_MAX_WAIT_SECONDS
    # 2 ** 40 seconds would be an overflow of timedelta, not a longer wait.
    seconds = cap if failures > cap.bit_length() else min(cap, 2 ** (failures - 1))
    return timedelta(seconds=seconds)


def _rows(keys: tuple[tuple[str, str], ...], now: datetime) -> list[SignInFailures]:
    """The keys' rows, created if new, locked; always in one order (no deadlock between two
    attempts that share an address but not an account)."""
    created = False
    for scope, key in keys:
        _, made = SignInFailures.objects.get_or_create(
            scope=scope, key=key, defaults={"last_failure_at": now, "locked_until": now}
        )
        created = created or made
    if created:
        # Rows are made only for failing names and addresses; the forgotten ones go here
        # (an indexed delete), so that a spray of made-up names leaves nothing behind for long.
        SignInFailures.objects.filter(
            last_failure_at__lt=now - FORGET_AFTER, locked_until__lt=now
        ).delete()
    match = Q()
    for scope, key in keys:
        match |= Q(scope=scope, key=key)
    return list(SignInFailures.objects.select_for_update().filter(match).order_by("scope", "key"))


def sign_in_attempt_begin(username: str, address: str | None) -> SignInAttempt:
    """Count an attempt to sign in as ``username`` from ``address`` as a failure, before the
    password is checked; raises :class:`SignInThrottled` (and counts nothing) while the name
    or the address must wait."""
    now = timezone.now()
    keys = [(str(Scope.ACCOUNT), _account_key(username))]
    if address:
        keys.append((str(Scope.ADDRESS), address))
    with transaction.atomic():
        rows = _rows(tuple(keys), now)
        waiting = [row for row in rows if row.locked_until > now]
        if waiting:
            wait = max(row.locked_until - now for row in waiting)
            seconds = max(1, math.ceil(wait.total_seconds()))
            log.warning(
                "password sign-in refused for %d s: account %r from %s (%s waiting)",
                seconds,
                username[:150],
                address or "?",
                " and ".join(str(row.scope) for row in waiting),
            )
            raise SignInThrottled(seconds)
        marks = {}
        for row in rows:
            before = row.last_failure_at
            if now - row.last_failure_at > FORGET_AFTER:
                row.failures = 0
            row.failures += 1
            row.last_failure_at = now
            row.locked_until = now + _wait(row.scope, row.failures)
            row.save(update_fields=["failures", "last_failure_at", "locked_until"])
            marks[(str(row.scope), row.key)] = (row.locked_until, before)
    return SignInAttempt(keys=tuple(keys), marks=tuple(marks[key] for key in keys))


def sign_in_attempt_succeeded(attempt: SignInAttempt) -> None:
    """The password was right: the account name starts again from zero; the address only
    takes this attempt back (one person's success must not clear another's guesses), with the
    wait it set and the time it renewed, so that people behind one address who sign in
    rightly neither lock each other out nor keep its failures from being forgotten."""
    for (scope, key), (locked_until, before) in zip(attempt.keys, attempt.marks, strict=True):
        rows = SignInFailures.objects.filter(scope=scope, key=key)
        if scope == Scope.ACCOUNT:
            rows.delete()
            continue
        # Unless a later failure has set a wait and a time of its own since.
        ours = rows.filter(failures__gt=0, locked_until=locked_until)
        if not ours.update(
            failures=F("failures") - 1, locked_until=timezone.now(), last_failure_at=before
        ):
            rows.filter(failures__gt=0).update(failures=F("failures") - 1)
