"""Claims of the test identity provider, plugged into django-oidc-provider's hooks.

The portal reads the same claims from the ID token (browser sign-in) and from the userinfo
endpoint (mozilla-django-oidc's bearer authentication calls only userinfo), so every claim
here is produced once and served by both.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.utils.translation import gettext_lazy as _
from oidc_provider.lib.claims import ScopeClaims

# A user's second-factor flag is membership in this group: it needs no model (and so no
# migration) and is never shown in the ``groups`` claim.
MFA_GROUP = "_mfa"


def group_names(user: User) -> list[str]:
    """The user's groups as the ``groups`` claim shows them, sorted for stable tokens."""
    names = user.groups.exclude(name=MFA_GROUP).values_list("name", flat=True)
    return sorted(names)


def has_mfa(user: User) -> bool:
    return user.groups.filter(name=MFA_GROUP).exists()


def authentication_claims(user: User) -> dict[str, Any]:
    """``amr`` and ``acr`` for a user: whether the provider vouches for a second factor."""
    if has_mfa(user):
        return {"amr": ["pwd", "mfa"], "acr": "mfa"}
    return {"amr": ["pwd"], "acr": "pwd"}


def userinfo(claims: dict[str, Any], user: User) -> dict[str, Any]:
    """``OIDC_USERINFO``: fill the standard claims the portal uses from the Django user."""
    claims["preferred_username"] = user.username
    claims["email"] = user.email
    claims["given_name"] = user.first_name
    claims["family_name"] = user.last_name
    claims["name"] = user.get_full_name() or user.username
    return claims


def add_authentication_methods(
    id_token: dict[str, Any], user: User, **kwargs: Any
) -> dict[str, Any]:
    """``OIDC_IDTOKEN_PROCESSING_HOOK``: ``amr``/``acr`` belong in every ID token, whatever
    scopes were asked for, so they are not left to the scope claims alone."""
    return {**id_token, **authentication_claims(user)}


class PortalScopeClaims(ScopeClaims):
    """``OIDC_EXTRA_SCOPE_CLAIMS``: the ``groups`` scope, and ``amr``/``acr`` on userinfo.

    The library calls ``scope_<name>`` for each scope of the access token; ``openid`` is in
    every OpenID Connect token, which is how ``amr`` and ``acr`` reach the userinfo response.
    """

    info_groups = (_("Groups"), _("The names of the groups you belong to."))

    def scope_openid(self) -> dict[str, Any]:
        return authentication_claims(self.user)

    def scope_groups(self) -> dict[str, Any]:
        return {"groups": group_names(self.user)}
