"""Test-only control endpoints of the identity provider: set up users and the client.

This is scaffolding for the fixture, not part of OpenID Connect. Every request must carry
the per-run secret (``IDP_CONTROL_SECRET``) in the ``X-IdP-Control-Secret`` header, so a
browser driven by a test can never reach these endpoints by accident.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from oidc_provider.models import Client, ResponseType

from tests.idp import CONTROL_SECRET_HEADER
from tests.idp.claims import MFA_GROUP

# token_introspection: the client may ask the introspection endpoint about access tokens.
CLIENT_SCOPES = ("openid", "email", "profile", "groups", "token_introspection")

JsonView = Callable[[dict[str, Any]], dict[str, Any]]


class BadRequest(ValueError):
    """The control request's JSON body does not say what it must."""


def control_endpoint(view: JsonView) -> Callable[[HttpRequest], HttpResponse]:
    """Wrap a function of the JSON body into a POST-only, secret-protected view."""

    @csrf_exempt
    @require_POST
    @wraps(view)
    def wrapped(request: HttpRequest) -> HttpResponse:
        given = request.headers.get(CONTROL_SECRET_HEADER, "")
        # Read with getattr: mypy checks this file against the portal's settings module,
        # which has no such setting.
        expected: str = getattr(settings, "IDP_CONTROL_SECRET")  # noqa: B009
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return JsonResponse({"error": "forbidden"}, status=403)
        try:
            body = json.loads(request.body)
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            return JsonResponse(view(body))
        except (json.JSONDecodeError, BadRequest) as error:
            return JsonResponse({"error": str(error)}, status=400)

    return wrapped


def _text(body: dict[str, Any], key: str, *, required: bool = False) -> str:
    value = body.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise BadRequest(f"{key!r} must be a{' non-empty' if required else ''} string")
    return value


def _texts(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise BadRequest(f"{key!r} must be a list of non-empty strings")
    return value


@transaction.atomic
def user_upsert(
    *,
    username: str,
    password: str,
    email: str,
    first_name: str,
    last_name: str,
    groups: Sequence[str],
    mfa: bool,
) -> bool:
    """Create or overwrite a user, with exactly these groups; return whether it is new."""
    if MFA_GROUP in groups:
        raise BadRequest(f"{MFA_GROUP!r} is reserved: pass 'mfa': true instead")
    user, created = User.objects.get_or_create(username=username)
    user.set_password(password)
    user.email, user.first_name, user.last_name = email, first_name, last_name
    user.save()
    names = [*groups, MFA_GROUP] if mfa else list(groups)
    user.groups.set([Group.objects.get_or_create(name=name)[0] for name in names])
    return created


@transaction.atomic
def client_upsert(
    *,
    client_id: str,
    client_secret: str,
    redirect_uris: Sequence[str],
    post_logout_redirect_uris: Sequence[str],
) -> bool:
    """Create or overwrite the confidential code-flow client; return whether it is new.

    Consent is never asked: the portal is a first-party application of this provider.
    """
    client, created = Client.objects.update_or_create(
        client_id=client_id,
        defaults={
            "name": "Jupyter launcher portal (tests)",
            "client_type": "confidential",
            "client_secret": client_secret,
            "jwt_alg": "RS256",
            "require_consent": False,
            "reuse_consent": True,
            "_redirect_uris": "\n".join(redirect_uris),
            "_post_logout_redirect_uris": "\n".join(post_logout_redirect_uris),
            # The password grant only hands out scopes the client is registered for.
            "_scope": " ".join(CLIENT_SCOPES),
        },
    )
    client.response_types.set([ResponseType.objects.get(value="code")])
    return created


@control_endpoint
def users(body: dict[str, Any]) -> dict[str, Any]:
    """``POST /_control/users/``: create or update one user."""
    mfa = body.get("mfa", False)
    if not isinstance(mfa, bool):
        raise BadRequest("'mfa' must be a boolean")
    created = user_upsert(
        username=_text(body, "username", required=True),
        password=_text(body, "password", required=True),
        email=_text(body, "email"),
        first_name=_text(body, "first_name"),
        last_name=_text(body, "last_name"),
        groups=_texts(body, "groups"),
        mfa=mfa,
    )
    return {"username": body["username"], "created": created}


@control_endpoint
def client(body: dict[str, Any]) -> dict[str, Any]:
    """``POST /_control/client/``: create the client or replace its redirect URIs."""
    created = client_upsert(
        client_id=_text(body, "client_id", required=True),
        client_secret=_text(body, "client_secret", required=True),
        redirect_uris=_texts(body, "redirect_uris"),
        post_logout_redirect_uris=_texts(body, "post_logout_redirect_uris"),
    )
    return {"client_id": body["client_id"], "created": created}
