"""Suspension end to end, with a real worker and a real JupyterLab: staff suspend a user from
the admin, the running session stops at once, every page and API call that would act for the
user is refused with the reason, and reinstatement (with a note) restores access."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from rest_framework.test import APIClient

from portal.tokens import token_issue
from sessions_app.models import Environment, Session
from suspension_app.models import Suspension
from tests.conftest import login_verified
from tests.sessions_app.lifecycle import in_state, server_answers, wait_for

pytestmark = pytest.mark.integration

REASON = "Repeated attempts to keep files out of the scratch cleanup."


def _launch(api: APIClient) -> Session:
    response = api.post("/api/v1/session/", {"environment": "ecmwf-dss"}, format="json")
    assert response.status_code == 201, response.json()
    return wait_for(response.json()["id"], in_state(Session.State.RUNNING))


def test_suspension_stops_the_session_refuses_everything_and_reinstatement_restores(
    celery_worker: Any, accepted: User, staff: User, environment: Environment
) -> None:
    user_pages = Client()
    login_verified(user_pages, accepted)
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(user=accepted)}")
    session = _launch(bearer)
    assert session.url and server_answers(session.spawner_state)
    admin = Client()
    login_verified(admin, staff)

    # Staff suspend the user from the admin's add form.
    response = admin.post(
        "/admin/suspension_app/suspension/add/",
        {"user": accepted.pk, "reason": REASON, "evidence": '{"ticket": "SD-42"}'},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    suspension = Suspension.objects.get(user=accepted)
    assert suspension.imposed_by == staff and suspension.evidence == {"ticket": "SD-42"}

    # The running session is stopped at once, with the reason.
    ended = wait_for(session.id, in_state(Session.State.STOPPED))
    assert ended.reason == Session.Reason.SUSPENDED
    assert not server_answers(session.spawner_state)

    # Pages say why, since when and how to appeal; the API refuses with the same message.
    page = user_pages.get("/")
    assert page.status_code == 403
    text = page.content.decode()
    assert "Your access is suspended" in text and "keep files out of the scratch cleanup" in text
    assert "How to appeal" in text
    for method, url in [("get", "/api/v1/session/"), ("post", "/api/v1/session/")]:
        answer = getattr(bearer, method)(url, {"environment": "ecmwf-dss"}, format="json")
        assert answer.status_code == 403
        assert answer.json()["code"] == "suspended"
        assert REASON in answer.json()["detail"]
    assert user_pages.post("/", {"environment": "ecmwf-dss"}).status_code == 403
    assert not Session.objects.filter(user=accepted, state__in=Session.ACTIVE_STATES).exists()
    assert len(mail.outbox) == 1 and accepted.email in mail.outbox[0].to
    assert REASON in str(mail.outbox[0].body)

    # Reinstating needs an investigation note; with one, access comes back.
    refused = admin.post(f"/admin/suspension_app/suspension/{suspension.pk}/reinstate/", {})
    assert refused.status_code == 200 and "Write an investigation note" in refused.content.decode()
    reinstated = admin.post(
        f"/admin/suspension_app/suspension/{suspension.pk}/reinstate/",
        {"note": "Talked to the user: a misconfigured sync script. Fixed."},
    )
    assert reinstated.status_code == 302
    suspension.refresh_from_db()
    assert suspension.lifted_by == staff and suspension.lifted_at is not None
    assert len(mail.outbox) == 2

    assert user_pages.get("/").status_code == 200
    again = _launch(bearer)
    assert bearer.delete("/api/v1/session/").status_code == 202
    wait_for(again.id, in_state(Session.State.STOPPED))
