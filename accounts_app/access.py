"""How each page view is guarded: by default the full policy; a few views say otherwise.

``public``: anyone (sign-in, the provider's callback). ``signed_in``: a signed-in person who
may not have passed the second factor yet (its own pages, sign-out, the refusal pages).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

PUBLIC = "public"
SIGNED_IN = "signed_in"
FULL = "full"

View = TypeVar("View", bound=Callable[..., Any])


def public_view(view: View) -> View:
    view.access_policy = PUBLIC  # type: ignore[attr-defined]
    return view


def signed_in_view(view: View) -> View:
    view.access_policy = SIGNED_IN  # type: ignore[attr-defined]
    return view


def view_access_policy(view: Callable[..., Any]) -> str:
    return str(getattr(view, "access_policy", FULL))
