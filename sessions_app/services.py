"""Writes of sessions: launch, spawn, stop, expire, the queue (reconcile: :mod:`.reconcile`).

Every state change is a conditional UPDATE on the current state, so two workers (or a worker and
a sweep) acting on one session cannot both win; a count of 0 means someone else got there first.
Slow back-end calls (process start, readiness polls, stop) never run inside a transaction, and
tasks are enqueued with ``transaction.on_commit``.

A little past the ~500 lines of the other modules: one session's write path (launch, spawn,
stop, expire, admission), whose every step is a transition of the same row under the same
rules; the staff's changes (``queue_changes``, ``staff_stop``), reconcile and the start
watcher are modules of their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from portal.errors import ServiceError
from sessions_app import events, spawn_owner, start_watch
from sessions_app.admission import AdmissionPolicy, capacity_free, too_large
from sessions_app.history import server_log_tail
from sessions_app.models import Environment, Session
from sessions_app.options import OptionError, validate_options
from sessions_app.selectors import (
    admission_policy,
    environment_allowed_for,
    queue_entries,
    queue_holdings,
    session_active_for,
)
from sessions_app.signals import session_launched
from sessions_app.spawners import get_spawner
from sessions_app.spawners.base import SpawnerError, SpawnRequest, TransientSpawnerError
from sessions_app.transitions import (
    END_MESSAGES,
    RETRYING,
    StartRetry,
    admit_soon,
    enqueue,
    fail_start,
    progress,
    start_retry_or_fail,
    transition,
)
from storage_app.layout import SessionFolders, session_folders_prepare
from suspension_app.selectors import suspension_active_for
from terms_app.selectors import terms_accepted_current, terms_current
from terms_app.services import terms_accept

log = logging.getLogger(__name__)

State = Session.State
Reason = Session.Reason

# How many rows of each kind one sweep pass handles; the rest waits for the next pass.
SWEEP_BATCH = 200


# A launch while the last session is still stopping is told to come back after this long:
# most servers are down within a few seconds (the stop task runs at once).
STOPPING_RETRY_SECONDS = 5


class LaunchError(ServiceError):
    """A launch that is refused (``retry_after``: ``still_stopping``'s wait)."""

    statuses = {"terms_not_accepted": 403, "suspended": 403, "still_stopping": 409}


@dataclass(frozen=True)
class LaunchResult:
    session: Session
    created: bool


@dataclass(frozen=True)
class TermsAgreement:
    """The user ticked "I agree" to this terms version on the launch form."""

    version: str
    ip_address: str | None
    user_agent: str


def session_launch(
    *,
    user: AbstractBaseUser,
    environment_slug: str,
    options: dict[str, Any] | None,
    agreement: TermsAgreement | None = None,
) -> LaunchResult:
    """Launch a session for ``user``, or return the active one if there is one.

    Checks that the current terms are accepted (recording ``agreement`` first, if given), that
    the environment exists and is enabled, and that the options fit its schema. Nothing is
    written when a check fails: an agreement given with a refused launch is not recorded either.
    Raises :class:`LaunchError` (``still_stopping`` while the active session is on its way
    out: it still counts as the user's one session), or ``TermsError`` for a stale agreement.
    """
    existing = session_active_for(user)
    if existing is not None:
        return _existing(existing)
    with transaction.atomic():
        if agreement is not None:
            terms_accept(
                user=user,
                version=agreement.version,
                ip_address=agreement.ip_address,
                user_agent=agreement.user_agent,
            )
        return _launch_new(user, environment_slug, options)


def _existing(session: Session) -> LaunchResult:
    """The answer to a launch while ``session`` is active: that session, unless it is stopping
    (handing it back would read as the launch's own session, whatever was asked for)."""
    if session.state == State.STOPPING:
        raise LaunchError(
            "Your last session is still stopping; launch again in a few seconds.",
            "still_stopping",
            retry_after=STOPPING_RETRY_SECONDS,
        )
    return LaunchResult(session, created=False)


def _launch_new(
    user: AbstractBaseUser, environment_slug: str, options: dict[str, Any] | None
) -> LaunchResult:
    if suspension_active_for(user) is not None:
        # Pages and API refuse suspended users first; this is the service's own guard.
        raise LaunchError("Your access is suspended: you cannot launch sessions.", "suspended")
    if not terms_accepted_current(user):
        current = terms_current()
        version = current.version if current else "?"
        raise LaunchError(
            f"Please read and accept the current terms of use (version {version}) before "
            "launching a session.",
            "terms_not_accepted",
        )
    environment = (
        Environment.objects.filter(slug=environment_slug, enabled=True)
        .prefetch_related("options")
        .first()
    )
    if environment is None:
        raise LaunchError(
            f"There is no environment {environment_slug!r} that you can launch.",
            "unknown_environment",
        )
    if not environment_allowed_for(environment, user):
        raise LaunchError(
            f"There is no environment {environment_slug!r} that you can launch.",
            "unknown_environment",
        )
    if environment.cpus > settings.SESSION_POOL_CPUS or (
        environment.memory_mb > settings.SESSION_POOL_MEMORY_MB
    ):
        raise LaunchError(
            f"{environment.name} needs more than this service can ever give one session "
            f"({environment.cpus} CPUs, {environment.memory_gb} GB); please tell the staff.",
            "environment_too_large",
        )
    if options is not None and not isinstance(options, dict):
        raise LaunchError("Options must be an object of name: value.", "invalid_options")
    try:
        validated = validate_options(environment.options.all(), options)
    except OptionError as exc:
        raise LaunchError(str(exc), "invalid_options") from None

    try:
        with transaction.atomic():
            session = Session.objects.create(
                user_id=user.pk,
                environment=environment,
                options=validated,
                state=State.QUEUED,
                created_at=timezone.now(),
                message="Waiting for resources.",
            )
            # Launching is what keeps the private storage (service rule 7): storage_app's
            # receiver counts it here, in the launch's transaction, so a queued session
            # protects it as a running one does.
            session_launched.send(
                sender=Session,
                session_id=str(session.pk),
                user=user,
                launched_at=session.created_at,
            )
            events.queue_changed()  # it may rank ahead of sessions already waiting
            admit_soon()
    except IntegrityError:
        # A concurrent launch by the same user won the "one active session" constraint.
        existing = session_active_for(user)
        if existing is None:
            raise
        return _existing(existing)
    return LaunchResult(session, created=True)


def _spawn_request(session: Session, folders: SessionFolders) -> SpawnRequest:
    environment = session.environment
    return SpawnRequest(
        session_id=str(session.id),
        username=session.user.get_username(),
        user_id=session.user_id,
        memory_mb=environment.memory_mb,
        cpus=environment.cpus,
        duration_seconds=environment.max_duration_minutes * 60,
        home_dir=folders.home,
        scratch_dir=folders.scratch,
        library_dir=folders.library if folders.library.is_dir() else None,
        options=dict(session.options),
        environment=environment.slug,
        backend_settings={
            key: value
            for key, value in (
                ("command", environment.command),
                ("image", environment.image),
                ("priority_class", environment.priority_class_name),
                ("kube", environment.kube_extras()),
            )
            if value
        },
    )


def session_spawn(session_id: str, attempt: int = 0) -> None:
    """Ask the back-end to start a queued session's server, and return: the start watcher
    (``sessions_app.start_watch``) marks it running once it answers, or failed.

    Safe to run again at any point (the task retries after a database error; a worker that
    was lost has its task delivered again): only a run that moves the row from queued to
    starting begins, once admission gave it room (``admitted_at``); a run that finds it
    starting goes on where the last one stopped: before the server was asked for, it asks
    (once: ``start_requested_at`` is claimed); after, it adopts the server the back-end runs.
    The run that goes on writes its process on the row (``spawn_owner``): the start watcher
    sends the start again if that process dies before the server exists.

    A transient error of the back-end (:class:`TransientSpawnerError`: busy, away) puts the
    row back to "claimed, not asked", waiting for a retry (``transitions.start_retry_or_fail``:
    its owner ``RETRYING``, which any run takes), and raises :class:`StartRetry`, on which the
    task retries itself (``attempt``: its retries so far), while the next try comes within
    ``SPAWN_TIMEOUT_SECONDS`` of the admission. A permanent error fails the start at once.
    """
    owner = spawn_owner.here()
    claimed = Session.objects.filter(
        pk=session_id, state=State.QUEUED, admitted_at__isnull=False
    ).update(
        state=State.STARTING,
        message="Starting your Jupyter server.",
        spawn_owner=owner,
        updated_at=timezone.now(),
    )
    if claimed:
        events.session_changed(session_id)
    else:
        asked = list(
            Session.objects.filter(pk=session_id, state=State.STARTING).values_list(
                "start_requested_at", flat=True
            )
        )
        if not asked:
            return  # queued and not admitted yet, or over
        if asked[0] is not None:
            # Asked already: adopt its server. None found: the last run is still in start(),
            # or was lost before the server existed; the start watcher tells them apart.
            if start_watch.session_adopt(get_spawner(), session_id):
                start_watch.wake()
            return
        # Claimed by a run that stopped before it asked: go on from there, unless another
        # process is at it (a start sent again, or this task's own retry, has no owner or this
        # one; a dead owner's start is sent again by the start watcher; one waiting for a
        # retry, RETRYING).
        if not Session.objects.filter(
            pk=session_id,
            state=State.STARTING,
            start_requested_at__isnull=True,
            spawn_owner__in=("", owner, RETRYING),
        ).update(spawn_owner=owner, updated_at=timezone.now()):
            return
    session = Session.objects.select_related("environment", "user").get(pk=session_id)
    if suspension_active_for(session.user) is not None:
        # A suspension that committed between the launch and now: its stop may have looked
        # for an active session before this one existed.
        now = timezone.now()
        transition(
            session_id,
            [State.STARTING],
            State.STOPPED,
            reason=Reason.SUSPENDED,
            message=END_MESSAGES[Reason.SUSPENDED],
            ended_at=now,
            updated_at=now,
        )
        return
    spawner = get_spawner()

    def report(message: str) -> None:
        try:
            progress(session_id, message)
        except DatabaseError as exc:
            # A progress line is not worth a start: a back-end halfway through start() must
            # not be interrupted by a database that went away.
            log.warning("session %s: progress line not saved: %s", session_id, exc)

    # Outside any transaction: the clone is network I/O and may take up to its timeout.
    if settings.NOTEBOOKS_LIBRARY_URL and not spawner.clones_library:
        report("Cloning the notebooks library…")
    try:
        folders = session_folders_prepare(session.user_id, clone=not spawner.clones_library)
    except OSError as exc:
        log.warning("session %s: storage not ready: %s", session_id, exc)
        fail_start(session_id, Reason.BACKEND_ERROR, f"Your storage could not be prepared: {exc}")
        return
    start_requested = timezone.now()
    # The spawn timeout counts from here (start_watch.py; the reconcile sweep too). Claimed:
    # of two runs of this task (a delivery repeated), one asks for the server; none asks for a
    # session stopped meanwhile.
    if not Session.objects.filter(
        pk=session_id, state=State.STARTING, start_requested_at__isnull=True
    ).update(
        library_status=folders.library_message,
        start_requested_at=start_requested,
        spawn_owner=owner,
        updated_at=start_requested,
    ):
        return
    events.session_changed(session_id)
    try:
        state = spawner.start(_spawn_request(session, folders), report)
    except TransientSpawnerError as exc:
        log.warning("session %s: start failed for a moment: %s", session_id, exc)
        countdown = start_retry_or_fail(session_id, owner, attempt, str(exc))
        if countdown is not None:
            raise StartRetry(countdown, exc) from exc
        return
    except SpawnerError as exc:
        log.warning("session %s: start failed: %s", session_id, exc)
        fail_start(session_id, Reason.BACKEND_ERROR, f"The server could not be started: {exc}")
        return
    # Saved before the row is read again: a stop request that came in meanwhile either sees
    # this state (and its task stops the server) or is seen here. From now on the start
    # watcher (start_watch.py) follows the server; this task's thread is free.
    Session.objects.filter(pk=session_id).update(spawner_state=state, updated_at=timezone.now())
    current = Session.objects.filter(pk=session_id).values_list("state", flat=True).first()
    if current != State.STARTING:
        spawner.stop(state)
        return
    start_watch.wake()


def session_request_stop(session_id: str, reason: str) -> bool:
    """Ask for a session to end; returns False if it was not active.

    A queued session ends at once (nothing runs yet); a starting or running one moves to
    stopping and a task takes its server down.
    """
    now = timezone.now()
    final = State.EXPIRED if reason == Reason.TIME_LIMIT else State.STOPPED
    message = END_MESSAGES.get(Reason(reason), "")
    with transaction.atomic():
        if transition(
            session_id,
            [State.QUEUED],
            final,
            updated_at=now,
            reason=reason,
            message=message,
            ended_at=now,
        ):
            return True
        if transition(
            session_id,
            [State.STARTING, State.RUNNING],
            State.STOPPING,
            updated_at=now,
            reason=reason,
            message="Stopping the server.",
        ):
            enqueue("stop_session", session_id)
            return True
    return False


def session_finish_stop(session_id: str) -> None:
    """Take a stopping session's server down and record how it ended. Safe to run twice."""
    session = Session.objects.filter(pk=session_id, state=State.STOPPING).first()
    if session is None:
        return
    tail = ""
    if session.spawner_state:
        spawner = get_spawner()
        # Before the stop, which removes the log: the history shows its last lines.
        tail = server_log_tail(spawner, session.spawner_state)
        spawner.stop(session.spawner_state)
    final = State.EXPIRED if session.reason == Reason.TIME_LIMIT else State.STOPPED
    transition(
        session_id,
        [State.STOPPING],
        final,
        log_tail=tail,
        url="",
        ended_at=timezone.now(),
        message=END_MESSAGES.get(Reason(session.reason), "The session was stopped."),
    )


def session_expire(session_id: str) -> None:
    """End a running session whose deadline has passed (the task scheduled at start)."""
    now = timezone.now()
    session = Session.objects.filter(pk=session_id, state=State.RUNNING).first()
    if session is None or session.expires_at is None:
        return
    if session.expires_at > now:
        # Delivered early (a clock difference, or a broker redelivery): try again at the deadline.
        with transaction.atomic():
            enqueue("expire_session", session_id, eta=session.expires_at)
        return
    session_request_stop(session_id, Reason.TIME_LIMIT)


# A spawn or stop sent this long ago whose row has not moved on counts as lost (a broker that
# was away, a worker that died holding it) and is sent again. Short: the row waits about one
# sweep once the broker is back. A second send does no harm: spawn and stop claim the row
# conditionally, and one that finds the work done returns.
RESEND_AFTER_SECONDS = 10


def sessions_expire_overdue() -> int:
    """The backstop for lost deadline tasks: stop every running session past its deadline.

    Also re-sends work whose task may have been lost (``portal/broker.py``: a send that found
    the broker away is left to this sweep): admitted sessions not picked up, starts sent again
    by the start watcher (no owner) not picked up, and stopping sessions not finished. Queued
    sessions not admitted yet wait for beat's admission pass.
    Returns the number of sessions stopped for their time limit.
    """
    now = timezone.now()
    overdue = list(
        Session.objects.filter(state=State.RUNNING, expires_at__lte=now).values_list(
            "pk", flat=True
        )[:SWEEP_BATCH]
    )
    expired = sum(session_request_stop(str(pk), Reason.TIME_LIMIT) for pk in overdue)
    stale = now - timedelta(seconds=min(RESEND_AFTER_SECONDS, settings.SESSION_SWEEP_SECONDS))
    with transaction.atomic():
        for pk in Session.objects.filter(
            state=State.QUEUED, admitted_at__lt=stale, updated_at__lt=stale
        ).values_list("pk", flat=True)[:SWEEP_BATCH]:
            enqueue("spawn_session", str(pk))  # admitted, but its spawn task was lost
        for pk in Session.objects.filter(
            state=State.STARTING,
            start_requested_at__isnull=True,
            spawn_owner="",
            updated_at__lt=stale,
        ).values_list("pk", flat=True)[:SWEEP_BATCH]:
            enqueue("spawn_session", str(pk))  # sent again (start_watch.py), but lost
        for pk in Session.objects.filter(state=State.STOPPING, updated_at__lt=stale).values_list(
            "pk", flat=True
        )[:SWEEP_BATCH]:
            enqueue("stop_session", str(pk))
    return expired


def sessions_admit() -> int:
    """Admit the queued sessions that fit, in the policy's order; returns how many.

    Safe with several workers at once: one transaction holds every environment row (``FOR NO
    KEY UPDATE``, which launches' foreign-key checks do not wait for) while it reads what is
    held and marks what it admits, so two passes never hand out the same room twice. A
    session admitted here starts in the spawn task, enqueued when this commits.
    """
    now = timezone.now()
    policy: AdmissionPolicy = admission_policy()
    with transaction.atomic():
        limits = {
            slug: limit
            for slug, limit in Environment.objects.select_for_update(no_key=True)
            .order_by("pk")
            .values_list("slug", "max_concurrent")
        }
        capacity = capacity_free(
            settings.SESSION_POOL_CPUS, settings.SESSION_POOL_MEMORY_MB, limits, queue_holdings(now)
        )
        waiting = queue_entries()
        for entry in waiting:
            if too_large(entry, settings.SESSION_POOL_CPUS, settings.SESSION_POOL_MEMORY_MB):
                # The pool shrank below what it needs since it was queued: it can never start.
                transition(
                    entry.key,
                    [State.QUEUED],
                    State.FAILED,
                    reason=Reason.BACKEND_ERROR,
                    message="This environment now needs more than the service can give one "
                    "session; please choose another or tell the staff.",
                    ended_at=now,
                )
        admitted = 0
        for entry in policy.select(waiting, capacity, now):
            if Session.objects.filter(
                pk=entry.key, state=State.QUEUED, admitted_at__isnull=True
            ).update(admitted_at=now, message="Starting soon.", updated_at=now):
                enqueue("spawn_session", entry.key)
                events.session_changed(entry.key)
                admitted += 1
        if admitted:
            events.queue_changed()
    return admitted


# Staff move a waiting session by at most this many priority steps at a time, and its boost
# stays within ±QUEUE_BOOST_LIMIT: enough to put any session first, never past the column.
