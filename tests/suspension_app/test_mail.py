"""E-mail to the user on suspension and on reinstatement, sent once the change is committed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from smtplib import SMTPException
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from suspension_app.models import Suspension
from suspension_app.services import suspension_impose, suspension_lift

SINCE = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
LIFTED = datetime(2030, 1, 4, 17, 45, tzinfo=UTC)


class FailingBackend(BaseEmailBackend):
    """A mail server that is down."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        raise SMTPException("connection refused")


@pytest.mark.django_db
def test_the_user_is_told_why_since_when_and_how_to_appeal(
    owner: User,
    staff: User,
    settings: Any,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given an appeal contact
    settings.SUSPENSION_APPEAL_CONTACT = "appeals@example.org"
    settings.DEFAULT_FROM_EMAIL = "portal@example.org"
    # When staff suspend the owner
    with time_machine.travel(SINCE, tick=False), django_capture_on_commit_callbacks(execute=True):
        suspension_impose(user=owner, reason="Crypto mining & port scans.", imposed_by=staff)
    # then one message tells them why, since when and whom to write to
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == ["owner@example.org"]
    assert message.from_email == "portal@example.org"
    assert "suspended" in message.subject and "\n" not in message.subject
    assert "Crypto mining & port scans." in message.body
    assert "since 2030-01-02 03:04 UTC" in message.body
    assert "To appeal, write to\nappeals@example.org" in message.body
    assert "<mailto:appeals@example.org?subject=" in message.body


@pytest.mark.django_db
def test_nothing_is_sent_before_the_commit(
    owner: User, staff: User, mailoutbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        suspension_impose(user=owner, reason="Abuse.", imposed_by=staff)

    assert mailoutbox == []
    assert callbacks


@pytest.mark.django_db
def test_reinstatement_mail_says_when_but_not_the_investigation_note(
    owner: User, staff: User, mailoutbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    # Given a suspended user
    with time_machine.travel(SINCE, tick=False):
        suspension = suspension_impose(user=owner, rule="some_rule", reason="Quota.")
    # When staff reinstate them
    with time_machine.travel(LIFTED, tick=False), django_capture_on_commit_callbacks(execute=True):
        suspension_lift(
            suspension=suspension, lifted_by=staff, note="Internal: user is a known prankster."
        )
    # then the user learns that and when, and nothing of the note
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == ["owner@example.org"]
    assert "restored" in message.subject
    assert "2030-01-04 17:45 UTC" in message.body
    assert "prankster" not in message.body and "Internal" not in message.body


@pytest.mark.django_db
def test_a_user_without_an_address_is_suspended_without_mail(
    owner: User, staff: User, mailoutbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    owner.email = ""
    owner.save()

    with django_capture_on_commit_callbacks(execute=True):
        suspension = suspension_impose(user=owner, reason="Abuse.", imposed_by=staff)

    assert suspension.is_active
    assert mailoutbox == []


@pytest.mark.django_db(transaction=True)
def test_a_mail_server_that_is_down_does_not_undo_the_suspension(
    owner: User, staff: User, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a mail server that refuses connections
    settings.EMAIL_BACKEND = f"{__name__}.FailingBackend"
    # When staff suspend the owner (a real commit)
    with caplog.at_level(logging.ERROR):
        suspension = suspension_impose(user=owner, reason="Abuse.", imposed_by=staff)
    # then the suspension stands, and the failure is logged
    assert Suspension.objects.get(pk=suspension.pk).is_active
    assert "connection refused" in caplog.text
