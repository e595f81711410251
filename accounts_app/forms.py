from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=32,
        strip=True,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autofocus": True, "spellcheck": "false"}
        ),
    )


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=100,
        required=False,
        help_text="What the token is for, e.g. the script that uses it.",
    )
    lifetime_days = forms.IntegerField(
        label="Lifetime (days)",
        required=False,
        min_value=1,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The deployment's limits, read per form (never at import).
        field = self.fields["lifetime_days"]
        field.validators.append(MaxValueValidator(settings.API_TOKEN_MAX_DAYS))
        field.widget.attrs.update(
            {"max": settings.API_TOKEN_MAX_DAYS, "placeholder": settings.API_TOKEN_DAYS}
        )
        field.help_text = (
            f"How many days the token works: {settings.API_TOKEN_DAYS} unless you say, at most "
            f"{settings.API_TOKEN_MAX_DAYS}."
        )
