"""Environment options are typed, defaulted and validated on the server."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from sessions_app.models import Environment, EnvironmentOption
from sessions_app.options import OptionError, validate_options

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(environment: Environment) -> list[EnvironmentOption]:
    return [
        EnvironmentOption.objects.create(
            environment=environment,
            name="interface",
            label="Interface",
            kind="choice",
            choices=["lab", "notebook"],
            default="lab",
        ),
        EnvironmentOption.objects.create(
            environment=environment, name="gpu", label="GPU", kind="boolean", default="false"
        ),
        EnvironmentOption.objects.create(
            environment=environment,
            name="workers",
            label="Dask workers",
            kind="integer",
            default="1",
            min_value=1,
            max_value=4,
        ),
    ]


def test_missing_options_take_their_typed_defaults(schema: list[EnvironmentOption]) -> None:
    assert validate_options(schema, {}) == {"interface": "lab", "gpu": False, "workers": 1}


def test_form_strings_and_json_values_are_both_accepted(schema: list[EnvironmentOption]) -> None:
    assert validate_options(schema, {"gpu": "on", "workers": "3"})["workers"] == 3
    assert validate_options(schema, {"gpu": True, "workers": 4}) == {
        "interface": "lab",
        "gpu": True,
        "workers": 4,
    }


@pytest.mark.parametrize(
    ("submitted", "message"),
    [
        ({"colour": "red"}, "Unknown option"),
        ({"interface": "emacs"}, "must be one of: lab, notebook"),
        ({"gpu": "perhaps"}, "true or false"),
        ({"workers": 9}, "at most 4"),
        ({"workers": 0}, "at least 1"),
        ({"workers": "two"}, "whole number"),
        ({"workers": 1.5}, "whole number"),
        ({"workers": True}, "whole number"),
        ({"interface": ["lab"]}, "must be a string"),
    ],
)
def test_values_outside_the_schema_are_refused_with_the_option_named(
    schema: list[EnvironmentOption], submitted: dict[str, object], message: str
) -> None:
    with pytest.raises(OptionError, match=message):
        validate_options(schema, submitted)


def test_an_option_whose_default_does_not_fit_cannot_be_saved_in_the_admin(
    environment: Environment,
) -> None:
    option = EnvironmentOption(
        environment=environment, name="n", label="N", kind="integer", default="many"
    )
    with pytest.raises(ValidationError, match="whole number"):
        option.full_clean()
