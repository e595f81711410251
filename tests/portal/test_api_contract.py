"""The API against its own OpenAPI document: schemathesis generates requests for every
operation (valid ones, and invalid ones it expects refused) and checks each answer: never a
server error, a status the document lists, a body its schema allows, the content type it names.

Twice: with a user's portal token and with a staff member's, so the staff endpoints are tried
both refused and allowed. Requests go through the whole Django stack (middleware, URLs, the
error handlers) as a WSGI application in this process; the database is committed
(``transaction=True``), as under a live server. No worker runs: a launch the examples make
stays queued, and what it sent to the broker is purged at the end.

Bounded: a fixed number of examples per operation, so the run takes a minute or two.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import wsgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from portal.models import ApiToken
from portal.tokens import token_issue
from sessions_app.models import Environment
from terms_app.models import TermsVersion
from terms_app.services import terms_accept

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

#: Examples per operation (and per token): enough to reach every refusal of the generic layer
#: and the views' own, few enough for CI (24 operations × 2 tokens: about 80 s).
EXAMPLES = 25
#: The long poll waits this long at most here (a queued session never starts: no worker).
LONGEST_WAIT = 0.2

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]


@pytest.fixture(autouse=True)
def _node_id(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32 names each operation's subtest through the node's ``_nodeid``, which
    # pytest 9 no longer has (it reads ``nodeid`` from ``_id``): an attribute for it to use.
    request.node._nodeid = request.node.nodeid


@pytest.fixture
def _no_messages_left() -> Iterator[None]:
    """Launches the examples make send their start to the broker; no worker takes them."""
    yield
    from portal.celery import app

    app.control.purge()


@pytest.fixture(params=["user", "staff"])
def caller(
    request: pytest.FixtureRequest,
    owner: User,
    staff: User,
    environment: Environment,
    terms: TermsVersion,
    settings: Any,
    _no_messages_left: None,
) -> tuple[User, str]:
    """The caller and their portal token. Both accepted the terms, so a launch can succeed."""
    settings.ALLOWED_HOSTS = [*django_settings.ALLOWED_HOSTS, wsgi.HOST]
    user = owner if request.param == "user" else staff
    terms_accept(user=user, version=terms.version, ip_address="127.0.0.1", user_agent="pytest")
    return user, token_issue(user=user)


@pytest.fixture
def api_schema(caller: tuple[User, str]) -> Any:
    _, token = caller
    return schemathesis.openapi.from_wsgi(
        "/api/v1/schema/?format=json",
        WSGIHandler(),
        headers={"Authorization": f"Bearer {token}"},
    )


schema = schemathesis.pytest.from_fixture("api_schema")


def _bounded(case: Any, token_id: int) -> None:
    """What the test must not let a generated request do: wait long, or revoke the token the
    test runs with (its other refusals are the contract's)."""
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > LONGEST_WAIT:
        case.query["wait"] = LONGEST_WAIT
    if (case.path_parameters or {}).get("token_id") == token_id:
        case.path_parameters["token_id"] = token_id + 10_000


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same requests in every run: a failure is reproducible
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_matches_the_document(case: Any, caller: tuple[User, str]) -> None:
    user, token = caller
    own = ApiToken.objects.filter(user=user).values_list("pk", flat=True).get()
    _bounded(case, own)

    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
