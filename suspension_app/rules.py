"""Automatic suspension: other parts of the portal report events, rules decide.

A reporter (the scratch quota enforcement, the cleanup) calls::

    suspension_report(user, RuleEvent.Kind.SCRATCH_QUOTA_EXCEEDED, {"used_bytes": …})

The event is recorded, then every registered rule for its kind looks at the user's events;
the first that fires suspends the user with the events as evidence. Events that led to a
suspension (or came in while one was in force) are linked to it and no longer count, so a
user reinstated after an investigation starts again from zero.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from suspension_app.models import RuleEvent, Suspension
from suspension_app.selectors import suspension_active_for
from suspension_app.services import suspension_impose


class Rule(ABC):
    """A rule that may suspend a user when an event of one of its ``kinds`` is reported."""

    name: str
    kinds: frozenset[str]

    @abstractmethod
    def evaluate(
        self, user: AbstractBaseUser, event: RuleEvent, now: datetime
    ) -> dict[str, Any] | None:
        """The evidence (JSON) if ``user`` is to be suspended after ``event``, else None.

        Evidence lists the events it rests on under ``"events"`` (each with its ``"id"``),
        so they are linked to the suspension.
        """

    @abstractmethod
    def reason(self, evidence: dict[str, Any]) -> str:
        """Why the user is suspended, in words for the user (shown and e-mailed to them)."""


def _event_evidence(event: RuleEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "kind": event.kind,
        "occurred_at": event.occurred_at.isoformat(),
        "details": event.details,
    }


class RepeatedEventsRule(Rule):
    """Fires when a user has ``threshold()`` events of ``kind`` within ``window()`` (None: ever)
    that have not yet led to a suspension."""

    kind: str

    def __init__(self) -> None:
        self.kinds = frozenset({self.kind})

    @abstractmethod
    def threshold(self) -> int: ...

    @abstractmethod
    def window(self) -> timedelta | None: ...

    def evaluate(
        self, user: AbstractBaseUser, event: RuleEvent, now: datetime
    ) -> dict[str, Any] | None:
        events = RuleEvent.objects.filter(
            user_id=user.pk, kind=self.kind, suspension__isnull=True, occurred_at__lte=now
        )
        window = self.window()
        if window is not None:
            events = events.filter(occurred_at__gte=now - window)
        counted = list(events.order_by("occurred_at", "pk"))
        threshold = self.threshold()
        if len(counted) < threshold:
            return None
        return {
            "rule": self.name,
            "threshold": threshold,
            "window_hours": window.total_seconds() / 3600 if window is not None else None,
            "events": [_event_evidence(item) for item in counted],
        }


class RepeatedScratchQuotaRule(RepeatedEventsRule):
    """``SUSPENSION_SCRATCH_VIOLATIONS`` scratch quota violations within
    ``SUSPENSION_SCRATCH_WINDOW_HOURS``."""

    name = "repeated_scratch_quota"
    kind = RuleEvent.Kind.SCRATCH_QUOTA_EXCEEDED

    def threshold(self) -> int:
        return int(settings.SUSPENSION_SCRATCH_VIOLATIONS)

    def window(self) -> timedelta:
        return timedelta(hours=settings.SUSPENSION_SCRATCH_WINDOW_HOURS)

    def reason(self, evidence: dict[str, Any]) -> str:
        return (
            f"Your scratch storage went over its quota {len(evidence['events'])} times within "
            f"{settings.SUSPENSION_SCRATCH_WINDOW_HOURS} hours. Repeated violations of the "
            "scratch quota break the service rules."
        )


class CleanupCircumventionRule(RepeatedEventsRule):
    """``SUSPENSION_CIRCUMVENTION_EVENTS`` attempts to circumvent a cleanup (1: at once).

    Circumvention is treated as malicious (service rule 8), so attempts do not age out.
    """

    name = "cleanup_circumvention"
    kind = RuleEvent.Kind.CLEANUP_CIRCUMVENTION

    def threshold(self) -> int:
        return int(settings.SUSPENSION_CIRCUMVENTION_EVENTS)

    def window(self) -> None:
        return None

    def reason(self, evidence: dict[str, Any]) -> str:
        count = len(evidence["events"])
        attempts = "An attempt" if count == 1 else f"{count} attempts"
        return (
            f"{attempts} to circumvent the storage cleanup {'was' if count == 1 else 'were'} "
            "detected. The service rules treat this as malicious."
        )


_RULES: list[Rule] = [RepeatedScratchQuotaRule(), CleanupCircumventionRule()]


def rule_register(rule: Rule) -> Rule:
    """Add a rule to those run by ``suspension_report`` (names are unique); returns it."""
    if any(existing.name == rule.name for existing in _RULES):
        raise ValueError(f"a suspension rule named {rule.name!r} is already registered")
    _RULES.append(rule)
    return rule


def rules_for(kind: str) -> list[Rule]:
    return [rule for rule in _RULES if kind in rule.kinds]


def suspension_report(
    user: AbstractBaseUser, kind: str, details: dict[str, Any] | None = None
) -> Suspension | None:
    """Record that ``kind`` happened to ``user`` and let the rules for it decide.

    Returns the suspension the event is linked to: the one a rule has just imposed, or the one
    already in force (the event is kept as evidence, and no second suspension is created);
    None when the user is not suspended. Raises ValueError for an unknown ``kind``.
    """
    kind = RuleEvent.Kind(kind)
    if details is not None and not isinstance(details, dict):
        raise ValueError("details must be a dict")
    now = timezone.now()
    with transaction.atomic():
        # One report per user at a time: two concurrent reports must not each count only
        # themselves and miss the threshold together. (SQLite serialises writers anyway.)
        list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk"))
        active = suspension_active_for(user)
        event = RuleEvent.objects.create(
            user_id=user.pk, kind=kind, occurred_at=now, details=details or {}, suspension=active
        )
        if active is not None:
            return active
        for rule in rules_for(kind):
            evidence = rule.evaluate(user, event, now)
            if evidence is None:
                continue
            suspension = suspension_impose(
                user=user, rule=rule.name, reason=rule.reason(evidence), evidence=evidence
            )
            event_ids = [item["id"] for item in evidence.get("events", [])] + [event.pk]
            RuleEvent.objects.filter(pk__in=event_ids, suspension__isnull=True).update(
                suspension=suspension
            )
            return suspension
    return None
