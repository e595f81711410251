"""The launcher page: what it shows, and what a launch from it creates or refuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from sessions_app.models import Environment, EnvironmentOption, Session
from terms_app.models import TermsAcceptance, TermsVersion
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db

LaunchPost = Callable[..., Any]


@pytest.fixture
def owner_client(client: Client, owner: User) -> Client:
    login_verified(client, owner)
    return client


@pytest.fixture
def launch(
    owner_client: Client, django_capture_on_commit_callbacks: Any, terms: TermsVersion
) -> LaunchPost:
    """POST the launcher form as the browser does (box ticked, current version), with
    overrides; the spawn task enqueued on commit is captured, not run."""

    def post(**overrides: Any) -> Any:
        data = {"environment": "ecmwf-dss", "terms_version": terms.version, "accept_terms": "on"}
        data.update(overrides)
        data = {key: value for key, value in data.items() if value is not None}
        with django_capture_on_commit_callbacks(execute=False):
            return owner_client.post("/", data, headers={"user-agent": "test-browser/1.0"})

    return post


def _publish_terms(version: str) -> TermsVersion:
    return TermsVersion.objects.create(
        version=version,
        title=f"Terms {version}",
        body="New **rules**.",
        published_at=timezone.now(),
    )


@pytest.mark.parametrize("path", ["/", "/session/", "/session/status/", "/terms/"])
def test_anonymous_user_is_sent_to_login(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"


def test_launcher_lists_the_default_environment(
    owner_client: Client, environment: Environment, terms: TermsVersion
) -> None:
    response = owner_client.get("/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "Select an Environment" in page
    assert '<option value="ecmwf-dss" selected>ECMWF Data Store Service</option>' in page
    row = response.context["choices"][0]
    assert row.environment.name == "ECMWF Data Store Service"
    assert "Some small data processing, e.g. data averaging of small files" in page
    assert '<td class="num">4</td>' in page
    assert '<td class="num">2</td>' in page
    assert '<td class="num">5</td>' in page
    for heading in ("Name", "Use case", "RAM (GB)", "CPU", "Duration (hours)"):
        assert f'<th scope="col">{heading}</th>' in page


def test_launcher_lists_enabled_environments_in_order_with_readable_sizes(
    owner_client: Client, environment: Environment, terms: TermsVersion
) -> None:
    Environment.objects.create(
        slug="retired",
        name="Retired environment",
        use_case="Nothing",
        memory_mb=1024,
        cpus=1,
        max_duration_minutes=60,
        enabled=False,
    )
    Environment.objects.create(
        slug="medium",
        name="Medium",
        use_case="Medium jobs",
        memory_mb=1536,
        cpus=1,
        max_duration_minutes=90,
        order=5,
    )

    page = owner_client.get("/").content.decode()

    assert "Retired environment" not in page
    assert page.index("ECMWF Data Store Service</option>") < page.index("Medium</option>")
    assert page.count('<td class="num">1.5</td>') == 2  # 1536 MB, and 90 minutes


def test_launcher_shows_current_terms_with_agreement_box(
    owner_client: Client, environment: Environment, terms: TermsVersion
) -> None:
    page = owner_client.get("/").content.decode()

    assert terms.title in page
    assert "<strong>Experimental service.</strong>" in page  # Markdown is rendered
    assert f'<input type="hidden" name="terms_version" value="{terms.version}">' in page
    assert 'name="accept_terms"' in page
    assert "I agree to the terms of use" in page


def test_user_who_accepted_current_terms_sees_no_agreement_box(
    client: Client, accepted: User, environment: Environment
) -> None:
    login_verified(client, accepted)

    page = client.get("/").content.decode()

    assert 'name="accept_terms"' not in page
    assert "You have accepted the current terms of use." in page


def test_launcher_renders_each_option_kind_under_its_environment(
    owner_client: Client, environment: Environment, terms: TermsVersion
) -> None:
    EnvironmentOption.objects.create(
        environment=environment,
        name="flavour",
        label="Flavour",
        kind="choice",
        choices=["plain", "spicy"],
        default="spicy",
    )
    EnvironmentOption.objects.create(
        environment=environment, name="gpu", label="Use a GPU", kind="boolean", default="true"
    )
    EnvironmentOption.objects.create(
        environment=environment,
        name="workers",
        label="Workers",
        kind="integer",
        default="2",
        min_value=1,
        max_value=4,
    )
    EnvironmentOption.objects.create(
        environment=environment, name="note", label="Note", kind="text", default="hi"
    )

    page = owner_client.get("/").content.decode()

    assert '<fieldset class="env-options" data-environment="ecmwf-dss">' in page
    assert '<option value="spicy" selected>spicy</option>' in page
    assert '<input type="hidden" name="opt.ecmwf-dss.gpu" value="false">' in page
    assert 'name="opt.ecmwf-dss.gpu" id="id_opt.ecmwf-dss.gpu" value="true" checked>' in page
    assert (
        'name="opt.ecmwf-dss.workers" id="id_opt.ecmwf-dss.workers" value="2" min="1" max="4"'
        in (page)
    )
    assert 'type="text" maxlength="200" name="opt.ecmwf-dss.note"' in page


def test_launch_records_acceptance_creates_queued_session_and_shows_it(
    owner_client: Client,
    owner: User,
    environment: Environment,
    terms: TermsVersion,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = owner_client.post(
            "/",
            {"environment": "ecmwf-dss", "terms_version": terms.version, "accept_terms": "on"},
            headers={"user-agent": "test-browser/1.0"},
        )

    assert response.status_code == 302
    assert response["Location"] == "/session/"
    session = Session.objects.get(user=owner)
    assert session.state == Session.State.QUEUED
    assert session.environment == environment
    acceptance = TermsAcceptance.objects.get(user=owner)
    assert acceptance.version == terms
    assert acceptance.ip_address == "127.0.0.1"
    assert acceptance.user_agent == "test-browser/1.0"
    assert len(callbacks) == 1  # the spawn task, sent once the launch is committed


def test_launch_without_ticking_the_box_shows_an_error_and_creates_nothing(
    launch: LaunchPost, owner: User, environment: Environment
) -> None:
    response = launch(accept_terms=None)

    assert response.status_code == 400
    assert "tick “I agree to the terms of use”" in response.content.decode()
    assert not Session.objects.exists()
    assert not TermsAcceptance.objects.exists()


def test_launch_against_terms_that_changed_meanwhile_creates_nothing(
    launch: LaunchPost, owner: User, environment: Environment, terms: TermsVersion
) -> None:
    newer = _publish_terms("2")

    response = launch()  # ticked, but for the version the page showed before

    assert response.status_code == 400
    page = response.content.decode()
    assert "The terms of use changed while you were reading them" in page
    # The page now shows the new version, with the box to tick again (not pre-ticked).
    assert f'name="terms_version" value="{newer.version}"' in page
    assert 'id="accept_terms" value="on">' in page
    assert not Session.objects.exists()
    assert not TermsAcceptance.objects.exists()


def test_user_who_accepted_an_older_version_must_accept_the_new_one(
    client: Client, accepted: User, environment: Environment, terms: TermsVersion
) -> None:
    login_verified(client, accepted)
    _publish_terms("2")

    # The page they loaded had no box (they had accepted version 1).
    response = client.post("/", {"environment": "ecmwf-dss", "terms_version": terms.version})

    assert response.status_code == 400
    assert "The terms of use have changed" in response.content.decode()
    assert not Session.objects.exists()
    assert TermsAcceptance.objects.filter(user=accepted).count() == 1


def test_launch_of_unknown_environment_is_refused_and_creates_nothing(
    launch: LaunchPost, owner: User, environment: Environment
) -> None:
    response = launch(environment="no-such-env")

    assert response.status_code == 400
    assert "There is no environment &#x27;no-such-env&#x27; that you can launch." in (
        response.content.decode()
    )
    assert not Session.objects.exists()
    # The agreement belongs to the refused launch: it is not kept either.
    assert not TermsAcceptance.objects.exists()


def test_launch_of_disabled_environment_is_refused(
    launch: LaunchPost, owner: User, environment: Environment
) -> None:
    Environment.objects.filter(pk=environment.pk).update(enabled=False)

    response = launch()

    assert response.status_code == 400
    assert not Session.objects.exists()


def test_launch_with_out_of_range_option_is_refused_and_creates_nothing(
    launch: LaunchPost, owner: User, environment: Environment
) -> None:
    EnvironmentOption.objects.create(
        environment=environment,
        name="workers",
        label="Workers",
        kind="integer",
        default="2",
        min_value=1,
        max_value=4,
    )

    response = launch(**{"opt.ecmwf-dss.workers": "99"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "must be at most 4" in page
    assert 'value="99"' in page  # the form keeps what the user typed
    assert not Session.objects.exists()
    assert not TermsAcceptance.objects.exists()


def test_launch_with_unknown_option_is_refused(
    launch: LaunchPost, owner: User, environment: Environment
) -> None:
    response = launch(**{"opt.ecmwf-dss.cores": "64"})

    assert response.status_code == 400
    assert "Unknown option(s) for this environment: cores." in response.content.decode()
    assert not Session.objects.exists()


@pytest.mark.parametrize(
    ("posted", "expected"),
    [(["false"], False), (["false", "true"], True)],
    ids=["unchecked", "checked"],
)
def test_boolean_option_is_sent_whether_checked_or_not(
    launch: LaunchPost,
    owner: User,
    environment: Environment,
    posted: list[str],
    expected: bool,
) -> None:
    EnvironmentOption.objects.create(
        environment=environment, name="gpu", label="Use a GPU", kind="boolean", default="true"
    )

    # As the browser posts it: the hidden "false", then the checkbox's "true" if ticked.
    response = launch(**{"opt.ecmwf-dss.gpu": posted})

    assert response.status_code == 302
    assert Session.objects.get(user=owner).options == {"gpu": expected}


def test_options_of_other_environments_are_ignored(
    launch: LaunchPost, owner: User, environment: Environment
) -> None:
    other = Environment.objects.create(
        slug="big", name="Big", use_case="More", memory_mb=8192, cpus=4, max_duration_minutes=60
    )
    EnvironmentOption.objects.create(
        environment=other, name="workers", label="Workers", kind="integer", default="1"
    )

    response = launch(**{"opt.big.workers": "not a number"})

    assert response.status_code == 302
    assert Session.objects.get(user=owner).environment == environment


def test_user_with_active_session_is_taken_to_it_instead_of_the_launcher(
    owner_client: Client, accepted: User, environment: Environment
) -> None:
    Session.objects.create(
        user=accepted,
        environment=environment,
        state=Session.State.QUEUED,
        created_at=timezone.now(),
    )

    assert owner_client.get("/")["Location"] == "/session/"
    response = owner_client.post("/", {"environment": "ecmwf-dss"})

    assert response.status_code == 302
    assert response["Location"] == "/session/"
    assert Session.objects.filter(user=accepted).count() == 1


def test_forged_post_without_csrf_token_is_refused(
    owner: User, environment: Environment, terms: TermsVersion
) -> None:
    client = Client(enforce_csrf_checks=True)
    login_verified(client, owner)

    response = client.post(
        "/", {"environment": "ecmwf-dss", "terms_version": terms.version, "accept_terms": "on"}
    )

    assert response.status_code == 403
    assert not Session.objects.exists()
    assert not TermsAcceptance.objects.exists()


def test_launcher_without_published_terms_launches_without_the_box(
    owner_client: Client,
    owner: User,
    environment: Environment,
    django_capture_on_commit_callbacks: Any,
) -> None:
    TermsVersion.objects.all().delete()
    assert "I agree to the terms of use" not in owner_client.get("/").content.decode()

    with django_capture_on_commit_callbacks(execute=False):
        response = owner_client.post("/", {"environment": "ecmwf-dss"})

    assert response.status_code == 302
    assert Session.objects.filter(user=owner).exists()


def test_launch_without_environment_asks_for_one(
    launch: LaunchPost, owner: User, environment: Environment
) -> None:
    response = launch(environment=None)

    assert response.status_code == 400
    assert "Please select an environment." in response.content.decode()
    assert not Session.objects.exists()
