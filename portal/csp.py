"""The Content-Security-Policy of every answer: ``CONTENT_SECURITY_POLICY`` (settings), plus
the identity provider's origins in ``form-action``.

The sign-in button's form and the sign-out form post to the portal, which answers with a
redirect to the provider (the authorization and end-session endpoints); browsers hold those
redirects to ``form-action`` too. The origins are read from the settings at each answer, so the
policy follows the configuration as it is, not as it was when the settings module loaded.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase


def provider_origins() -> list[str]:
    """The origins of the provider's endpoints that a form may end at, in a stable order."""
    origins = set()
    for url in (settings.OIDC_OP_AUTHORIZATION_ENDPOINT, settings.OIDC_OP_LOGOUT_ENDPOINT):
        parts = urlsplit(url or "")
        if parts.scheme in ("http", "https") and parts.netloc:
            origins.add(f"{parts.scheme}://{parts.netloc}")
    return sorted(origins)


class PortalCSPMiddleware(CSPMiddleware):
    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        origins = provider_origins()
        if origins and not report_only:
            update = dict(parts.update or {})
            update["form-action"] = [*(update.get("form-action") or []), *origins]
            parts.update = update
        return parts

    async def __acall__(self, request: HttpRequest) -> Any:
        # The policy comes from the settings and the request alone (no database, no I/O), so
        # the async chain (the waiting views) builds it on the event loop: MiddlewareMixin would
        # hop to Django's one sync thread twice per answer, and a wave of long polls woken
        # together would queue there.
        self.process_request(request)
        response = await self.get_response(request)  # type: ignore[misc]  # async chain
        return self.process_response(request, response)
