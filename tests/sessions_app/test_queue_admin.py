"""The queue in the admin: staff see the waiting sessions in the policy's order with their
figures, move one up or down and remove one; staff who may only view see it without the
buttons; the services behind it refuse what they must."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client

from sessions_app.models import Environment, Session
from sessions_app.queue_changes import QueueError, queue_move, queue_remove
from sessions_app.selectors import admission_policy, queue_entries
from tests.conftest import login_verified
from tests.sessions_app.queue_world import NOW, _fast_passwords, _frozen, large, queue

__all__ = ["_fast_passwords", "_frozen", "large", "queue"]  # fixtures, by name

pytestmark = pytest.mark.django_db

QUEUE = "/admin/sessions_app/session/queue/"


@pytest.fixture
def admin_client(staff: User) -> Client:
    client = Client()
    login_verified(client, staff)
    return client


def _rows(page: str) -> list[str]:
    """The session ids of the queue page's rows, top to bottom."""
    return re.findall(r'data-session="([0-9a-f-]+)"', page)


def _shown(client: Client) -> list[str]:
    page = client.get(QUEUE)
    assert page.status_code == 200
    return _rows(page.content.decode())


def _ids(queue: dict[str, Session], *names: str) -> list[str]:
    return [str(queue[name].pk) for name in names]


def test_the_empty_queue_page_renders(admin_client: Client, environment: Environment) -> None:
    page = admin_client.get(QUEUE)

    assert page.status_code == 200
    assert "Nobody is waiting" in page.content.decode()


def test_the_busy_queue_page_shows_the_policys_order_and_the_figures(
    admin_client: Client, queue: dict[str, Session]
) -> None:
    page = admin_client.get(QUEUE).content.decode()

    policy_order = [entry.key for entry in admission_policy().order(queue_entries(), NOW)]
    assert _shown(admin_client) == policy_order == _ids(queue, "ann", "ben", "big")
    assert "3 waiting" in page
    assert "10.50" in page  # ann's effective priority: 10 + 5 minutes / 10 per step
    assert "2.00" in page  # big's: 0 + 20 / 10
    assert "about 10 min" in page  # ann: run1 reaches its limit in 10 minutes
    assert "5\xa0minutes" in page  # ann waited
    assert page.count('value="Move up"') == 3
    assert page.count('class="deletelink"') == 3


def test_the_sessions_list_links_to_the_queue(
    admin_client: Client, environment: Environment
) -> None:
    page = admin_client.get("/admin/sessions_app/session/").content.decode()

    assert f'href="{QUEUE}"' in page


def test_move_up_and_move_down_change_the_order(
    admin_client: Client,
    staff: User,
    queue: dict[str, Session],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # when staff move ben up
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(f"{QUEUE}{queue['ben'].pk}/move/", {"steps": "1"})

    # then he is first, his boost is +1, an admission pass follows and the history says who
    assert response.status_code == 302 and response["Location"] == QUEUE
    assert len(callbacks) == 1
    page = admin_client.get(QUEUE).content.decode()
    assert "Moved ben&#x27;s session up (boost +1)." in page
    assert _rows(page) == _ids(queue, "ben", "ann", "big")
    assert Session.objects.get(pk=queue["ben"].pk).queue_boost == 1
    assert LogEntry.objects.get(object_id=str(queue["ben"].pk)).user_id == staff.pk

    # when they move him down twice
    for _ in range(2):
        admin_client.post(f"{QUEUE}{queue['ben'].pk}/move/", {"steps": "-1"})

    # then ann leads again (10.5 against 10.3 - 1)
    assert _shown(admin_client) == _ids(queue, "ann", "ben", "big")
    assert Session.objects.get(pk=queue["ben"].pk).queue_boost == -1


def test_remove_asks_first_then_ends_the_session_and_the_rest_move_up(
    admin_client: Client, queue: dict[str, Session]
) -> None:
    url = f"{QUEUE}{queue['ann'].pk}/remove/"

    # the confirmation page changes nothing
    confirm = admin_client.get(url)
    assert confirm.status_code == 200
    assert "Remove <strong>ann</strong>" in confirm.content.decode()
    assert Session.objects.get(pk=queue["ann"].pk).state == Session.State.QUEUED

    # when staff confirm
    response = admin_client.post(url)

    # then ann's session ended as stopped by staff, and the others moved up
    assert response.status_code == 302 and response["Location"] == QUEUE
    ann = Session.objects.get(pk=queue["ann"].pk)
    assert (ann.state, ann.reason) == (Session.State.STOPPED, Session.Reason.STAFF_STOPPED)
    page = admin_client.get(QUEUE).content.decode()
    assert "Removed ann&#x27;s session from the queue." in page
    assert _rows(page) == _ids(queue, "ben", "big")


def test_a_session_that_is_not_waiting_is_left_alone_with_a_warning(
    admin_client: Client, queue: dict[str, Session]
) -> None:
    running = Session.objects.filter(state=Session.State.RUNNING).first()
    assert running is not None

    moved = admin_client.post(f"{QUEUE}{running.pk}/move/", {"steps": "1"}, follow=True)
    confirm = admin_client.get(f"{QUEUE}{running.pk}/remove/", follow=True)
    removed = admin_client.post(f"{QUEUE}{running.pk}/remove/", follow=True)

    for response in (moved, confirm, removed):
        assert f"Session {running.pk} is not waiting in the queue." in response.content.decode()
    running.refresh_from_db()
    assert (running.state, running.queue_boost) == (Session.State.RUNNING, 0)


def test_a_move_without_steps_says_so(admin_client: Client, queue: dict[str, Session]) -> None:
    response = admin_client.post(f"{QUEUE}{queue['ben'].pk}/move/", {}, follow=True)

    assert "Say how many steps to move it." in response.content.decode()
    assert Session.objects.get(pk=queue["ben"].pk).queue_boost == 0


def test_staff_who_may_only_view_see_the_queue_without_the_buttons(
    other_user: User, queue: dict[str, Session]
) -> None:
    # given staff with the view permission on sessions only
    other_user.is_staff = True
    other_user.save()
    other_user.user_permissions.add(
        Permission.objects.get(content_type__app_label="sessions_app", codename="view_session")
    )
    client = Client()
    login_verified(client, other_user)

    page = client.get(QUEUE)
    moved = client.post(f"{QUEUE}{queue['ben'].pk}/move/", {"steps": "1"})
    removed = client.post(f"{QUEUE}{queue['ann'].pk}/remove/")

    assert page.status_code == 200
    assert len(_rows(page.content.decode())) == 3
    assert "Move up" not in page.content.decode()
    assert "Remove" not in page.content.decode()
    assert [moved.status_code, removed.status_code] == [403, 403]
    assert {s.queue_boost for s in Session.objects.all()} == {0}
    assert Session.objects.filter(state=Session.State.QUEUED).count() == 3


def test_the_services_refuse_bad_steps_and_sessions_not_waiting(
    staff: User, queue: dict[str, Session]
) -> None:
    running = Session.objects.filter(state=Session.State.RUNNING).first()
    assert running is not None
    cases = [
        (lambda: queue_move(str(queue["ben"].pk), 0, by=staff), "invalid_steps"),
        (lambda: queue_move(str(queue["ben"].pk), 11, by=staff), "invalid_steps"),
        (lambda: queue_move(str(queue["ben"].pk), True, by=staff), "invalid_steps"),
        (lambda: queue_move(str(running.pk), 1, by=staff), "not_queued"),
        (lambda: queue_move("not-a-session", 1, by=staff), "not_queued"),
        (lambda: queue_remove(str(running.pk), by=staff), "not_queued"),
    ]
    for call, code in cases:
        with pytest.raises(QueueError) as refused:
            call()
        assert refused.value.code == code
    assert {s.queue_boost for s in Session.objects.all()} == {0}
    assert Session.objects.filter(state=Session.State.QUEUED).count() == 3
    assert not LogEntry.objects.exists()
