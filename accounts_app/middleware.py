"""The pages' guard: signed in, second factor, access policy, suspension, then a periodic
check that the identity provider still vouches for the session (``SessionRefresh``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.deprecation import MiddlewareMixin
from mozilla_django_oidc.middleware import SessionRefresh

from accounts_app.access import PUBLIC, SIGNED_IN, view_access_policy
from accounts_app.oidc import oidc_session_stale
from accounts_app.pages import refusal_page
from accounts_app.policy import access_refusal, oidc_enabled
from accounts_app.second_factor import second_factor_passed


def _is_api_view(view: Callable[..., Any]) -> bool:
    # Imported here: DRF's settings import this project's authentication classes.
    from rest_framework.views import APIView

    cls = getattr(view, "cls", None)
    return isinstance(cls, type) and issubclass(cls, APIView)


class AccessPolicyMiddleware(MiddlewareMixin):
    """The guard, in ``process_view``. A MiddlewareMixin, so async-capable: an async view
    behind it (the waiting views, ``portal/asgi.py``) then waits without holding a thread."""

    def process_view(
        self,
        request: HttpRequest,
        view: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        policy = view_access_policy(view)
        if policy == PUBLIC or _is_api_view(view):
            return None  # the API's permission classes apply the same rules
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if policy == SIGNED_IN:
            return None
        if not second_factor_passed(request):
            query = urlencode({"next": request.get_full_path()})
            return HttpResponseRedirect(f"{reverse('second-factor')}?{query}")
        refusal = access_refusal(request.user)
        if refusal is not None:
            return refusal_page(request, refusal)
        if oidc_session_stale(request) and request.method != "GET":
            # The re-check needs a GET (a redirect through the provider): go and do it first.
            return HttpResponseRedirect(request.path)
        if oidc_enabled():
            # Re-asks the provider (prompt=none) once the ID token is older than
            # OIDC_RENEW_SECONDS: someone disabled there is signed out here.
            refresh: HttpResponse | None = SessionRefresh(self.get_response).process_request(
                request
            )
            return refresh
        return None
