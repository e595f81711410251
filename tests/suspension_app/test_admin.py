"""Staff suspend and reinstate users in the Django admin; the record is never edited."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from sessions_app.models import Environment, Session
from suspension_app.models import RuleEvent, Suspension
from suspension_app.rules import suspension_report
from suspension_app.services import suspension_impose, suspension_lift
from tests.conftest import login_verified
from tests.suspension_app.conftest import make_session, suspend_by_rule

LIST = "/admin/suspension_app/suspension/"
ADD = "/admin/suspension_app/suspension/add/"


def _change(suspension: Suspension) -> str:
    return f"{LIST}{suspension.pk}/change/"


def _reinstate(suspension: Suspension) -> str:
    return f"{LIST}{suspension.pk}/reinstate/"


@pytest.mark.django_db
def test_staff_pages_of_the_suspension_admin_answer(
    staff_client: Client, owner: User, other_user: User, staff: User
) -> None:
    # Given one suspension in force (with its event) and one lifted
    active = suspension_report(owner, RuleEvent.Kind.CLEANUP_CIRCUMVENTION, {"path": "/x"})
    assert active is not None
    lifted = suspension_impose(user=other_user, reason="Spam.", imposed_by=staff)
    suspension_lift(suspension=lifted, lifted_by=staff, note="Checked.")
    event = RuleEvent.objects.get()
    # then every page answers
    for url in [
        LIST,
        f"{LIST}?status=active",
        f"{LIST}?status=lifted",
        f"{LIST}?origin=staff",
        f"{LIST}?origin=cleanup_circumvention",
        f"{LIST}?user__id__exact={owner.pk}",
        f"{LIST}?q=owner",
        ADD,
        _change(active),
        _change(lifted),
        _reinstate(active),
        "/admin/suspension_app/ruleevent/",
        f"/admin/suspension_app/ruleevent/?user__id__exact={owner.pk}",
        f"/admin/suspension_app/ruleevent/{event.pk}/change/",
    ]:
        assert staff_client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_the_list_shows_who_since_when_by_whom_and_why(staff_client: Client, owner: User) -> None:
    suspend_by_rule(owner, "Your scratch storage went over its quota 3 times.")

    page = staff_client.get(LIST).content.decode()

    assert "owner" in page
    assert "rule test_rule" in page
    assert "Your scratch storage went over its quota 3 times." in page


@pytest.mark.django_db
def test_the_list_filtered_by_user_is_that_users_history(
    staff_client: Client, owner: User, other_user: User
) -> None:
    suspend_by_rule(owner, "Owner's reason.")
    suspend_by_rule(other_user, "Other's reason.")

    page = staff_client.get(f"{LIST}?user__id__exact={owner.pk}").content.decode()

    assert "Owner&#x27;s reason." in page
    assert "Other&#x27;s reason." not in page


@pytest.mark.django_db
def test_suspending_from_the_add_form_stops_the_session_and_mails_the_user(
    staff_client: Client,
    owner: User,
    staff: User,
    environment: Environment,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given a running session
    session = make_session(owner, environment, "running")
    # When staff fill in the add form
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            ADD,
            {"user": owner.pk, "reason": "Port scans from the session.", "evidence": '{"t": 1}'},
        )
    # then the user is suspended by that staff member, the session stops, the user is told
    assert response.status_code == 302
    suspension = Suspension.objects.get()
    assert (suspension.user, suspension.imposed_by, suspension.rule) == (owner, staff, "")
    assert suspension.reason == "Port scans from the session."
    assert suspension.evidence == {"t": 1}
    session.refresh_from_db()
    assert (session.state, session.reason) == ("stopping", "suspended")
    assert len(mailoutbox) == 1 and "Port scans from the session." in mailoutbox[0].body


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_suspending_from_the_admin_ends_the_session_through_the_worker(
    celery_worker: Any, staff: User, owner: User, environment: Environment
) -> None:
    # Given a running session (no server behind it) and a real worker
    staff_client = Client()
    login_verified(staff_client, staff)
    session = make_session(owner, environment, "running")
    # When staff suspend its owner
    response = staff_client.post(ADD, {"user": owner.pk, "reason": "Abuse.", "evidence": ""})
    assert response.status_code == 302
    # then the worker takes the session down, and it ended because of the suspension
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        session.refresh_from_db()
        if session.state == Session.State.STOPPED:
            break
        time.sleep(0.1)
    assert (session.state, session.reason) == ("stopped", "suspended")


@pytest.mark.django_db
def test_the_add_form_refuses_a_user_already_suspended(
    staff_client: Client, owner: User, mailoutbox: list[Any]
) -> None:
    suspend_by_rule(owner)

    response = staff_client.post(ADD, {"user": owner.pk, "reason": "Again.", "evidence": ""})

    assert response.status_code == 200
    assert "is already suspended" in response.content.decode()
    assert Suspension.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"reason": "", "evidence": ""}, "This field is required."),
        ({"reason": "Why.", "evidence": "[1, 2]"}, "Give the evidence as a JSON object"),
        ({"reason": "Why.", "evidence": "{not json"}, "Enter a valid JSON."),
    ],
)
def test_the_add_form_refuses_bad_input_and_writes_nothing(
    staff_client: Client, owner: User, data: dict[str, str], message: str
) -> None:
    response = staff_client.post(ADD, {"user": owner.pk, **data})

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Suspension.objects.exists()


@pytest.mark.django_db
def test_staff_cannot_suspend_themselves_from_the_add_form(
    staff_client: Client, staff: User
) -> None:
    response = staff_client.post(ADD, {"user": staff.pk, "reason": "Oops.", "evidence": ""})

    assert "You cannot suspend yourself." in response.content.decode()
    assert not Suspension.objects.exists()


@pytest.mark.django_db
def test_the_change_page_offers_reinstate_only_while_in_force(
    staff_client: Client, owner: User, staff: User
) -> None:
    suspension = suspend_by_rule(owner)
    assert _reinstate(suspension) in staff_client.get(_change(suspension)).content.decode()

    suspension_lift(suspension=suspension, lifted_by=staff, note="Checked.")

    assert _reinstate(suspension) not in staff_client.get(_change(suspension)).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("note", ["", "   "])
def test_reinstating_without_a_note_shows_a_form_error_and_keeps_the_suspension(
    staff_client: Client, owner: User, mailoutbox: list[Any], note: str
) -> None:
    suspension = suspend_by_rule(owner)

    response = staff_client.post(_reinstate(suspension), {"note": note})

    assert response.status_code == 200
    assert "Write an investigation note" in response.content.decode()
    suspension.refresh_from_db()
    assert suspension.is_active
    assert mailoutbox == []


@pytest.mark.django_db
def test_reinstating_with_a_note_lifts_the_suspension_and_tells_the_user(
    staff_client: Client,
    owner: User,
    staff: User,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given a suspended user
    suspension = suspend_by_rule(owner)
    # When staff reinstate them with a note
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            _reinstate(suspension), {"note": "The quota alerts came from a broken sensor."}
        )
    # then the suspension is lifted by them, with the note, and the user is told
    assert response.status_code == 302
    assert response["Location"] == _change(suspension)
    suspension.refresh_from_db()
    assert not suspension.is_active
    assert suspension.lifted_by == staff
    assert suspension.investigation_note == "The quota alerts came from a broken sensor."
    assert len(mailoutbox) == 1 and "broken sensor" not in mailoutbox[0].body


@pytest.mark.django_db
def test_reinstating_a_lifted_suspension_changes_nothing(
    staff_client: Client, owner: User, staff: User
) -> None:
    suspension = suspend_by_rule(owner)
    suspension_lift(suspension=suspension, lifted_by=staff, note="First.")

    response = staff_client.post(_reinstate(suspension), {"note": "Second."}, follow=True)

    assert "already lifted" in response.content.decode()
    suspension.refresh_from_db()
    assert suspension.investigation_note == "First."


@pytest.mark.django_db
def test_suspensions_cannot_be_edited_or_deleted(
    staff_client: Client, owner: User, staff: User
) -> None:
    suspension = suspend_by_rule(owner, "Original reason.")

    staff_client.post(_change(suspension), {"reason": "Rewritten.", "user": owner.pk})
    deleted = staff_client.post(f"{LIST}{suspension.pk}/delete/", {"post": "yes"})
    staff_client.post(LIST, {"action": "delete_selected", "_selected_action": [suspension.pk]})

    assert deleted.status_code == 403
    suspension.refresh_from_db()
    assert suspension.reason == "Original reason."


@pytest.mark.django_db
def test_rule_events_are_read_only(staff_client: Client, owner: User) -> None:
    suspension_report(owner, RuleEvent.Kind.SCRATCH_QUOTA_EXCEEDED, {})
    event = RuleEvent.objects.get()

    assert staff_client.get("/admin/suspension_app/ruleevent/add/").status_code == 403
    deleted = staff_client.post(f"/admin/suspension_app/ruleevent/{event.pk}/delete/", {"post": 1})
    assert deleted.status_code == 403
    assert RuleEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.django_db
def test_users_who_are_not_staff_cannot_suspend_or_reinstate(owner: User, other_user: User) -> None:
    # Given a signed-in user who is not staff, and someone else's suspension
    client = Client()
    login_verified(client, owner)
    suspension = suspend_by_rule(other_user)
    # When they try the admin pages
    pages = [client.get(LIST), client.get(ADD), client.get(_reinstate(suspension))]
    added = client.post(ADD, {"user": other_user.pk, "reason": "Mine.", "evidence": ""})
    reinstated = client.post(_reinstate(suspension), {"note": "Let them in."})
    # then they are sent away and nothing changes
    assert all(page.status_code in (302, 403) for page in pages)
    assert (added.status_code, reinstated.status_code) in [(302, 302), (403, 403)]
    suspension.refresh_from_db()
    assert suspension.is_active
    assert Suspension.objects.count() == 1


@pytest.mark.django_db
def test_staff_without_the_reinstate_permission_cannot_reinstate(
    owner: User, django_user_model: type[User]
) -> None:
    # Given a staff member who may view and add suspensions, but not lift them
    helpdesk = django_user_model.objects.create_user("helpdesk", is_staff=True)
    helpdesk.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="suspension_app",
            codename__in=["view_suspension", "add_suspension"],
        )
    )
    client = Client()
    login_verified(client, helpdesk)
    suspension = suspend_by_rule(owner)
    # then the change page offers no reinstatement, and the page refuses
    assert _reinstate(suspension) not in client.get(_change(suspension)).content.decode()
    assert client.post(_reinstate(suspension), {"note": "Fine."}).status_code == 403
    suspension.refresh_from_db()
    assert suspension.is_active
