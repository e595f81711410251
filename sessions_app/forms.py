"""The launch form, and the per-environment option fields the launcher renders.

The form checks only what belongs to the page (a ticked box, the fields being there);
whether the environment exists and the options fit its schema is for ``session_launch`` to
decide, so the web page and the API refuse the same things with the same messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django import forms

from sessions_app.models import Environment, EnvironmentOption

# Option inputs are named ``opt.<environment slug>.<option name>``: the page holds the options
# of every environment at once, and two environments may have options of the same name. Slugs
# never contain a dot, so the prefix is unambiguous.
OPTION_PREFIX = "opt."

_TRUE = {"true", "on", "1", "yes"}


def option_field_name(environment: Environment, option: EnvironmentOption) -> str:
    return f"{OPTION_PREFIX}{environment.slug}.{option.name}"


class LaunchForm(forms.Form):
    """What the launcher posts: the environment, its options, and the terms agreement."""

    environment = forms.CharField(
        max_length=64, error_messages={"required": "Please select an environment."}
    )
    terms_version = forms.CharField(max_length=32, required=False)
    accept_terms = forms.BooleanField(required=False)

    def __init__(self, *args: Any, current_terms_version: str | None, **kwargs: Any) -> None:
        """``current_terms_version`` is the version the user must still accept, or None."""
        super().__init__(*args, **kwargs)
        self.current_terms_version = current_terms_version

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.current_terms_version is not None and not cleaned.get("accept_terms"):
            posted = cleaned.get("terms_version")
            if posted and posted != self.current_terms_version:
                # The user accepted the version they saw, and a newer one was published since.
                raise forms.ValidationError(
                    "The terms of use have changed: please read them again and tick "
                    "“I agree to the terms of use” to launch a session.",
                    code="terms_version_stale",
                )
            raise forms.ValidationError(
                "Please read the terms of use and tick “I agree to the terms of use” to "
                "launch a session.",
                code="terms_not_accepted",
            )
        return cleaned

    def submitted_options(self) -> dict[str, str]:
        """The raw option values posted for the chosen environment, by option name.

        For a boolean the page posts a hidden "false" before the checkbox's "true", so the
        last value of a name is the one that counts.
        """
        prefix = f"{OPTION_PREFIX}{self.cleaned_data['environment']}."
        return {
            key.removeprefix(prefix): self.data[key] for key in self.data if key.startswith(prefix)
        }


@dataclass(frozen=True)
class OptionField:
    """One option input as the template renders it."""

    option: EnvironmentOption
    name: str
    value: str

    @property
    def checked(self) -> bool:
        return self.value.strip().lower() in _TRUE


@dataclass(frozen=True)
class EnvironmentChoice:
    """One environment of the launcher: its table row and its option inputs."""

    environment: Environment
    fields: list[OptionField]

    @property
    def duration_hours(self) -> str:
        """The maximum duration in hours, as short as it can be said: "5", "1.5", "0.25"."""
        return f"{round(self.environment.max_duration_minutes / 60, 2):g}"


def environment_choices(
    environments: Iterable[Environment], data: Mapping[str, Any] | None = None
) -> list[EnvironmentChoice]:
    """The launcher's environments with their option inputs, holding the posted values when
    the page is shown again after a refused launch, else each option's default."""
    data = data or {}
    choices = []
    for environment in environments:
        fields = []
        for option in environment.options.all():
            name = option_field_name(environment, option)
            fields.append(OptionField(option, name, str(data.get(name, option.default))))
        choices.append(EnvironmentChoice(environment, fields))
    return choices
