"""``jlp``'s refusals against a live portal: each one line ``jlp: <detail> (<code>)`` from the
API's own error, and an exit code a script can tell apart (documented in ``jlp --help``)."""

from __future__ import annotations

import stat

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from portal.models import ApiToken
from sessions_app.models import Environment, Session
from terms_app.models import TermsVersion
from tests.client.conftest import Jlp
from tests.portal.router_world import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def test_login_checks_the_token_with_the_portal_and_stores_it_for_the_owner_only(
    jlp: Jlp, portal_url: str, token: str, terms: TermsVersion
) -> None:
    # when the user logs in with a good token (typed at the prompt; here, on standard input)
    ran = jlp("login", "--url", portal_url, stdin=f"{token}\n")
    # then it is stored, readable by them only, and they learn that the terms wait for them
    assert ran.code == 0, ran.err
    assert f"Logged in to {portal_url}" in ran.out
    assert "jlp terms --accept" in ran.out
    assert stat.S_IMODE(jlp.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(jlp.config_file.parent.stat().st_mode) == 0o700
    assert token in jlp.config_file.read_text()
    # and the next commands use it
    assert jlp("status").out.strip() == "No active session."


def test_a_refused_token_is_not_stored_and_exits_3(jlp: Jlp, portal_url: str, owner: User) -> None:
    # when
    ran = jlp("login", "--url", portal_url, stdin="jlp_not-a-real-token\n")
    # then
    assert ran.code == 3
    assert ran.err.splitlines()[0] == "jlp: Invalid or revoked token. (authentication_failed)"
    assert "account page" in ran.err
    assert not jlp.config_file.exists()


def test_a_piped_token_without_a_url_is_never_taken_for_the_url(jlp: Jlp, token: str) -> None:
    # when a script pipes the token in but names no portal
    ran = jlp("login", stdin=f"{token}\n")
    # then it is told how to name one, and nothing is stored
    assert ran.code == 2
    assert "jlp login --url URL" in ran.err
    assert token not in ran.err
    assert not jlp.config_file.exists()


def test_a_token_revoked_after_login_exits_3_on_the_next_command(
    jlp: Jlp, portal_url: str, token: str
) -> None:
    # given
    assert jlp("login", "--url", portal_url, stdin=token).code == 0
    # when the owner revokes it on their account page
    ApiToken.objects.update(revoked_at=timezone.now())
    ran = jlp("history")
    # then
    assert ran.code == 3
    assert "(authentication_failed)" in ran.err


def test_without_login_every_command_says_how_to_log_in_and_exits_3(jlp: Jlp) -> None:
    for command in ("status", "launch", "stop", "history", "storage", "environments"):
        ran = jlp(command)
        assert ran.code == 3, command
        assert ran.err.startswith("jlp: not logged in: run 'jlp login'"), ran.err


def test_the_environment_variables_take_the_place_of_a_login(
    jlp: Jlp, portal_url: str, token: str, environment: Environment
) -> None:
    ran = jlp("environments", JLP_URL=portal_url, JLP_TOKEN=token)

    assert ran.code == 0, ran.err
    assert ran.out.startswith("ecmwf-dss: ")


def test_launching_before_accepting_the_terms_says_how_to_accept_them(
    jlp: Jlp, portal_url: str, token: str, terms: TermsVersion, environment: Environment
) -> None:
    # given
    jlp.env.update(JLP_URL=portal_url, JLP_TOKEN=token)
    # when
    ran = jlp("launch")
    # then
    assert ran.code == 1
    first, hint = ran.err.splitlines()
    assert first.startswith("jlp: ") and first.endswith(" (terms_not_accepted)")
    assert "jlp terms --accept" in hint
    assert not Session.objects.exists()
    # and once they accept, the launch goes through (queued: no worker here)
    accepted = jlp("terms", "--accept")
    assert accepted.code == 0, accepted.err
    assert accepted.out.strip() == f"Accepted the terms of use, version {terms.version}."
    ran = jlp("launch")
    assert ran.code == 0, ran.err
    assert "(ecmwf-dss): queued" in ran.out
    assert Session.objects.get().state == Session.State.QUEUED


def test_an_unknown_environment_is_the_portals_error_and_exits_1(
    jlp: Jlp, portal_url: str, token: str, accepted: User, environment: Environment
) -> None:
    ran = jlp("launch", "no-such-env", JLP_URL=portal_url, JLP_TOKEN=token)

    assert ran.code == 1
    first, hint = ran.err.splitlines()
    assert first.startswith("jlp: ") and first.endswith(" (unknown_environment)")
    assert "'no-such-env'" in first
    assert "jlp environments" in hint
    assert not Session.objects.exists()


def test_stop_without_a_session_exits_1_with_the_portals_words(
    jlp: Jlp, portal_url: str, token: str
) -> None:
    ran = jlp("stop", JLP_URL=portal_url, JLP_TOKEN=token)

    assert ran.code == 1
    assert ran.err.splitlines()[0] == "jlp: You have no active session. (no_active_session)"


def test_an_unreachable_portal_exits_5(jlp: Jlp) -> None:
    ran = jlp("status", JLP_URL=f"http://127.0.0.1:{free_port()}", JLP_TOKEN="jlp_x")

    assert ran.code == 5
    assert ran.err.startswith("jlp: cannot reach the portal at http://127.0.0.1:")
    assert ran.err.rstrip().endswith("(connection_error)")


@pytest.mark.parametrize(
    "args",
    [("frobnicate",), ("launch", "--option", "gpu"), ("launch", "--timeout", "5"), ()],
    ids=["unknown command", "option without a value", "timeout without wait", "no command"],
)
def test_wrong_usage_exits_2(jlp: Jlp, args: tuple[str, ...]) -> None:
    ran = jlp(*args, JLP_URL="http://127.0.0.1:1", JLP_TOKEN="jlp_x")

    assert ran.code == 2
    assert ran.err.strip(), "says what is wrong"
