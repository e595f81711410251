"""REST API: the list of environments a user can launch."""

from __future__ import annotations

from rest_framework.test import APIClient

from sessions_app.models import Environment, EnvironmentOption

URL = "/api/v1/environments/"


def test_environments_list_the_default_environment_with_its_resources(
    api: APIClient, environment: Environment
) -> None:
    response = api.get(URL)

    assert response.status_code == 200
    assert response.json() == [
        {
            "slug": "ecmwf-dss",
            "name": "ECMWF Data Store Service",
            "use_case": "Some small data processing, e.g. data averaging of small files",
            "memory_mb": 4096,
            "cpus": 2,
            "max_duration_minutes": 300,
            "priority": 10,
            "options": [],
        }
    ]


def test_environments_leave_out_disabled_ones(api: APIClient, environment: Environment) -> None:
    # given
    Environment.objects.create(
        slug="retired", name="Retired", use_case="-", memory_mb=1024, cpus=1,
        max_duration_minutes=60, enabled=False,
    )  # fmt: skip
    # when
    slugs = [env["slug"] for env in api.get(URL).json()]
    # then
    assert slugs == ["ecmwf-dss"]


def test_environments_are_a_plain_list_even_when_many(api: APIClient, db: None) -> None:
    # given: more environments than a page of the paginated endpoints holds
    Environment.objects.bulk_create(
        Environment(
            slug=f"env-{n:02}",
            name=f"Env {n:02}",
            use_case="-",
            memory_mb=1024,
            cpus=1,
            max_duration_minutes=60,
            order=n + 1,
        )  # fmt: skip
        for n in range(25)
    )
    # when
    body = api.get(URL).json()
    # then
    assert isinstance(body, list)
    assert len(body) == 26


def test_environment_options_are_described_with_typed_defaults(
    api: APIClient, environment: Environment
) -> None:
    # given: one option of each kind, in the order staff chose
    EnvironmentOption.objects.create(
        environment=environment, name="flavour", label="Flavour", kind="choice",
        choices=["small", "large"], default="small", order=1, help_text="Machine size.",
    )  # fmt: skip
    EnvironmentOption.objects.create(
        environment=environment, name="gpu", label="GPU", kind="boolean", default="true",
        order=2,
    )  # fmt: skip
    EnvironmentOption.objects.create(
        environment=environment, name="workers", label="Workers", kind="integer", default="4",
        min_value=1, max_value=8, order=3,
    )  # fmt: skip
    EnvironmentOption.objects.create(
        environment=environment, name="note", label="Note", kind="text", default="", order=4
    )
    # when
    options = api.get(URL).json()[0]["options"]
    # then
    assert options == [
        {
            "name": "flavour", "label": "Flavour", "type": "choice",
            "choices": ["small", "large"], "default": "small", "min": None, "max": None,
            "help_text": "Machine size.",
        },
        {
            "name": "gpu", "label": "GPU", "type": "boolean", "choices": [], "default": True,
            "min": None, "max": None, "help_text": "",
        },
        {
            "name": "workers", "label": "Workers", "type": "integer", "choices": [],
            "default": 4, "min": 1, "max": 8, "help_text": "",
        },
        {
            "name": "note", "label": "Note", "type": "text", "choices": [], "default": "",
            "min": None, "max": None, "help_text": "",
        },
    ]  # fmt: skip


def test_an_option_default_that_does_not_fit_its_type_is_listed_as_null(
    api: APIClient, environment: Environment
) -> None:
    # given: a default saved without the admin's validation
    EnvironmentOption.objects.create(
        environment=environment, name="workers", label="Workers", kind="integer", default="many"
    )
    # when
    response = api.get(URL)
    # then: the list still answers, and says there is no usable default
    assert response.status_code == 200
    assert response.json()[0]["options"][0]["default"] is None


def test_environments_refuse_anonymous_callers(db: None) -> None:
    response = APIClient().get(URL)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
