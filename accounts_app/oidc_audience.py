"""Whom a provider's access token was issued to: the portal, or another application.

The provider's userinfo endpoint answers for any of its access tokens, whichever application
it was issued to; a token that a user gave some other application must not open the portal's
API on their behalf. So before userinfo is asked, the token's audience must name the portal's
client id (``OIDC_RP_CLIENT_ID``):

- with ``OIDC_OP_INTROSPECTION_ENDPOINT`` set, the provider says (RFC 7662): the token must be
  ``active`` and its ``aud`` include the client id, or its ``client_id`` be the portal's;
- otherwise the token must be a JWT whose ``aud`` includes the client id or whose ``azp`` is
  it. Its signature is not checked here: userinfo, asked next, refuses a token the provider
  did not sign as it is, so the claims read here are the provider's or the request fails;
- an opaque token without an introspection endpoint cannot be placed, and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt
import requests
from django.conf import settings


class AudienceRefused(Exception):
    """The token is not (or cannot be shown to be) for the portal; ``code`` is stable."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _wrong_audience() -> AudienceRefused:
    return AudienceRefused(
        "This access token was issued to another application: use one issued to the portal, "
        "or a portal token.",
        "wrong_audience",
    )


def _names(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


def claims_name_portal(claims: Mapping[str, Any], *, client_key: str) -> bool:
    """Whether ``claims`` (a JWT's, or an introspection answer) name the portal's client:
    in ``aud``, or as ``client_key`` (``azp`` of a JWT, ``client_id`` of introspection)."""
    ours = settings.OIDC_RP_CLIENT_ID
    return bool(ours) and (ours in _names(claims.get("aud")) or claims.get(client_key) == ours)


def _jwt_claims(raw: str) -> dict[str, Any] | None:
    """The claims of ``raw`` if it is a JWT, unverified (see the module's note); else None."""
    if raw.count(".") != 2:
        return None
    try:
        claims = jwt.decode(raw, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims, dict) else None


def _introspection(raw: str) -> dict[str, Any]:
    """The provider's answer about ``raw``; ``requests`` errors propagate."""
    response = requests.post(
        settings.OIDC_OP_INTROSPECTION_ENDPOINT,
        data={
            "token": raw,
            "token_type_hint": "access_token",
            "client_id": settings.OIDC_RP_CLIENT_ID,
            "client_secret": settings.OIDC_RP_CLIENT_SECRET,
        },
        timeout=settings.OIDC_TIMEOUT,
    )
    response.raise_for_status()
    answer = response.json()
    return answer if isinstance(answer, dict) else {}


def access_token_audience_check(raw: str) -> None:
    """Raise :class:`AudienceRefused` unless ``raw`` was issued to the portal. May raise
    ``requests`` errors (the introspection endpoint unreachable or failing)."""
    if settings.OIDC_OP_INTROSPECTION_ENDPOINT:
        answer = _introspection(raw)
        if answer.get("active") is not True:
            raise AudienceRefused(
                "The identity provider does not accept this access token.",
                "authentication_failed",
            )
        if not claims_name_portal(answer, client_key="client_id"):
            raise _wrong_audience()
        return
    claims = _jwt_claims(raw)
    if claims is None:
        raise AudienceRefused(
            "The portal cannot tell which application this access token was issued to (it is "
            "not a JWT, and no introspection endpoint is configured): use a portal token.",
            "audience_unknown",
        )
    if not claims_name_portal(claims, client_key="azp"):
        raise _wrong_audience()
