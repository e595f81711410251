"""Automatic suspension: reported events, rule thresholds and windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import AbstractBaseUser, User

from sessions_app.models import Environment
from suspension_app import rules
from suspension_app.models import RuleEvent, Suspension
from suspension_app.rules import Rule, rule_register, suspension_report
from suspension_app.services import suspension_lift
from tests.suspension_app.conftest import make_session

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 3, 1, 8, 0, tzinfo=UTC)
SCRATCH = RuleEvent.Kind.SCRATCH_QUOTA_EXCEEDED
CIRCUMVENTION = RuleEvent.Kind.CLEANUP_CIRCUMVENTION


def _report_at(moment: datetime, user: User, kind: str, **details: Any) -> Suspension | None:
    with time_machine.travel(moment, tick=False):
        return suspension_report(user, kind, details)


def test_scratch_violations_below_the_threshold_are_recorded_but_do_not_suspend(
    owner: User,
) -> None:
    # Given the default threshold of 3, when the quota is exceeded twice
    results = [_report_at(T0 + timedelta(hours=hours), owner, SCRATCH) for hours in (0, 1)]
    # then both events are kept, and the user is not suspended
    assert results == [None, None]
    assert RuleEvent.objects.filter(user=owner, kind=SCRATCH).count() == 2
    assert not Suspension.objects.exists()


def test_the_third_scratch_violation_within_the_window_suspends_with_the_evidence(
    owner: User,
) -> None:
    # Given two violations within the last day
    _report_at(T0, owner, SCRATCH, used_gb=120)
    _report_at(T0 + timedelta(hours=10), owner, SCRATCH, used_gb=130)
    # When a third one comes in, 23 hours after the first
    suspension = _report_at(T0 + timedelta(hours=23), owner, SCRATCH, used_gb=140)
    # then the rule suspends the user, with the three events as evidence, linked to it
    assert suspension is not None
    assert (suspension.rule, suspension.imposed_by) == ("repeated_scratch_quota", None)
    assert suspension.created_at == T0 + timedelta(hours=23)
    assert "3 times within 24 hours" in suspension.reason
    events = list(RuleEvent.objects.order_by("occurred_at"))
    assert [item["id"] for item in suspension.evidence["events"]] == [e.pk for e in events]
    assert [item["details"] for item in suspension.evidence["events"]] == [
        {"used_gb": 120},
        {"used_gb": 130},
        {"used_gb": 140},
    ]
    assert suspension.evidence["events"][0]["occurred_at"] == T0.isoformat()
    assert {event.suspension_id for event in events} == {suspension.pk}


def test_violations_spread_wider_than_the_window_do_not_suspend(owner: User) -> None:
    # Given violations 0, 13 and 24 hours + 1 second apart from the first
    _report_at(T0, owner, SCRATCH)
    _report_at(T0 + timedelta(hours=13), owner, SCRATCH)
    # When the third comes just after the first left the 24-hour window
    result = _report_at(T0 + timedelta(hours=24, seconds=1), owner, SCRATCH)
    # then only two count
    assert result is None
    assert not Suspension.objects.exists()


def test_scratch_threshold_and_window_come_from_the_settings(owner: User, settings: Any) -> None:
    # Given: two violations within one hour suspend
    settings.SUSPENSION_SCRATCH_VIOLATIONS = 2
    settings.SUSPENSION_SCRATCH_WINDOW_HOURS = 1
    # When violations come 61 minutes apart, then 30 minutes apart
    first = _report_at(T0, owner, SCRATCH)
    second = _report_at(T0 + timedelta(minutes=61), owner, SCRATCH)
    third = _report_at(T0 + timedelta(minutes=91), owner, SCRATCH)
    # then only the third suspends, on the last two events
    assert (first, second) == (None, None)
    assert third is not None
    assert len(third.evidence["events"]) == 2
    assert "2 times within 1 hours" in third.reason


def test_an_attempt_to_circumvent_a_cleanup_suspends_at_once(owner: User) -> None:
    suspension = _report_at(T0, owner, CIRCUMVENTION, path="/scratch/owner/.hidden", how="chattr")

    assert suspension is not None
    assert suspension.rule == "cleanup_circumvention"
    assert "circumvent" in suspension.reason
    assert suspension.evidence["events"][0]["details"]["how"] == "chattr"


def test_the_circumvention_threshold_comes_from_the_settings(owner: User, settings: Any) -> None:
    settings.SUSPENSION_CIRCUMVENTION_EVENTS = 2

    first = _report_at(T0, owner, CIRCUMVENTION)
    second = _report_at(T0 + timedelta(days=30), owner, CIRCUMVENTION)

    assert first is None
    assert second is not None and len(second.evidence["events"]) == 2


def test_events_of_a_suspended_user_are_kept_as_evidence_without_a_second_suspension(
    owner: User,
) -> None:
    # Given a user suspended for circumvention
    suspension = _report_at(T0, owner, CIRCUMVENTION)
    assert suspension is not None
    # When more events come in (enough for the scratch rule, too)
    later = [
        _report_at(T0 + timedelta(minutes=minutes), owner, kind)
        for minutes, kind in ((1, CIRCUMVENTION), (2, SCRATCH), (3, SCRATCH), (4, SCRATCH))
    ]
    # then each is recorded and linked to the suspension in force; there is no second one
    assert {result.pk for result in later if result is not None} == {suspension.pk}
    assert Suspension.objects.count() == 1
    assert RuleEvent.objects.filter(user=owner, suspension=suspension).count() == 5


def test_a_reinstated_user_starts_again_from_zero(owner: User, staff: User) -> None:
    # Given a user suspended for three violations, then reinstated after an investigation
    for hours in (0, 1, 2):
        suspension = _report_at(T0 + timedelta(hours=hours), owner, SCRATCH)
    assert suspension is not None
    suspension_lift(suspension=suspension, lifted_by=staff, note="A runaway job; user warned.")
    # When one more violation comes within the same day
    result = _report_at(T0 + timedelta(hours=3), owner, SCRATCH)
    # then the earlier ones, which led to the lifted suspension, do not count again
    assert result is None
    assert Suspension.objects.filter(lifted_at__isnull=True).count() == 0


def test_one_users_events_do_not_count_for_another(owner: User, other_user: User) -> None:
    _report_at(T0, owner, SCRATCH)
    _report_at(T0 + timedelta(hours=1), owner, SCRATCH)

    result = _report_at(T0 + timedelta(hours=2), other_user, SCRATCH)

    assert result is None


def test_a_rule_suspension_stops_the_session_and_mails_the_user(
    owner: User,
    environment: Environment,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = make_session(owner, environment, "running")

    with django_capture_on_commit_callbacks(execute=True):
        suspension_report(owner, CIRCUMVENTION, {"path": "/scratch/owner/x"})

    session.refresh_from_db()
    assert (session.state, session.reason) == ("stopping", "suspended")
    assert len(mailoutbox) == 1
    assert "circumvent" in mailoutbox[0].body


def test_an_unknown_kind_is_refused_and_not_recorded(owner: User) -> None:
    with pytest.raises(ValueError):
        suspension_report(owner, "ssh_attempt", {})

    assert not RuleEvent.objects.exists()


class _EveryScratchEvent(Rule):
    name = "every_scratch_event"
    kinds = frozenset({SCRATCH})

    def evaluate(
        self, user: AbstractBaseUser, event: RuleEvent, now: datetime
    ) -> dict[str, Any] | None:
        return {"events": [{"id": event.pk}], "note": "strict test rule"}

    def reason(self, evidence: dict[str, Any]) -> str:
        return "Strict."


def test_a_registered_rule_runs_for_its_kind(owner: User, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a rule that suspends at the first scratch violation
    monkeypatch.setattr(rules, "_RULES", [])
    rule_register(_EveryScratchEvent())
    # When one is reported
    suspension = _report_at(T0, owner, SCRATCH)
    # then that rule suspended the user
    assert suspension is not None
    assert (suspension.rule, suspension.reason) == ("every_scratch_event", "Strict.")
    assert RuleEvent.objects.get().suspension == suspension


def test_rule_names_are_unique(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rules, "_RULES", [])
    rule_register(_EveryScratchEvent())

    with pytest.raises(ValueError, match="already registered"):
        rule_register(_EveryScratchEvent())
