"""Sign-in, the second factor, sign-out, refusals, and the account page (API tokens)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts_app.access import public_view, signed_in_view
from accounts_app.forms import CodeForm, TokenCreateForm
from accounts_app.oidc import REFUSAL_SESSION_KEY, provider_logout_url
from accounts_app.policy import Refusal, local_login_enabled, oidc_enabled
from accounts_app.second_factor import (
    SecondFactorError,
    backup_codes_left,
    backup_codes_renew,
    second_factor_enrolment_open,
    second_factor_mark,
    second_factor_method,
    second_factor_passed,
    second_factor_reset_with_backup_code,
    second_factor_verify,
    totp_confirm,
    totp_device_confirmed,
    totp_enrolment,
)
from accounts_app.sign_in_throttle import (
    SignInThrottled,
    sign_in_attempt_begin,
    sign_in_attempt_succeeded,
)
from portal.client_ip import client_ip
from portal.tokens import token_issue, token_revoke, tokens_live_for

LOCAL_LOGIN_OFF = "Signing in with a password is turned off here: use the button above."


def _user(request: HttpRequest) -> AbstractBaseUser:
    assert isinstance(request.user, AbstractBaseUser)  # the access middleware saw to it
    return request.user


def _next_url(request: HttpRequest, default: str = "launcher") -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse(default)


def _with_next(url_name: str, next_url: str) -> HttpResponse:
    return HttpResponseRedirect(f"{reverse(url_name)}?{urlencode({'next': next_url})}")


def _login_page(
    request: HttpRequest, form: AuthenticationForm | None, status: int = 200, error: str = ""
) -> HttpResponse:
    context = {
        "form": form,
        "next": request.POST.get("next") or request.GET.get("next") or "",
        "oidc": oidc_enabled(),
        "local_login": local_login_enabled(),
        "provider_name": settings.OIDC_PROVIDER_NAME,
        "error": error,
    }
    return render(request, "registration/login.html", context, status=status)


@public_view
@never_cache
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    """The provider's button (when OIDC is on) and, where allowed, a local password form."""
    if request.method == "GET":
        form = AuthenticationForm(request) if local_login_enabled() else None
        return _login_page(request, form)
    if not local_login_enabled():
        return _login_page(request, None, status=403, error=LOCAL_LOGIN_OFF)
    username, password = request.POST.get("username", ""), request.POST.get("password", "")
    attempt = None
    if username and password:  # the form checks a password only when both are there
        try:
            attempt = sign_in_attempt_begin(username, client_ip(request))
        except SignInThrottled as exc:
            return _throttled_login_page(request, exc.wait_seconds)
    form = AuthenticationForm(request, data=request.POST)
    if not form.is_valid():
        return _login_page(request, form)
    if attempt is not None:
        sign_in_attempt_succeeded(attempt)
    auth.login(request, form.get_user(), backend="django.contrib.auth.backends.ModelBackend")
    return _with_next("second-factor", _next_url(request))


def _throttled_login_page(request: HttpRequest, wait_seconds: int) -> HttpResponse:
    error = (
        f"Too many wrong passwords for this account or from your address: wait {wait_seconds} "
        "seconds before trying again."
    )
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    response = _login_page(request, form, status=429, error=error)
    response["Retry-After"] = str(wait_seconds)
    return response


@public_view
@never_cache
def login_failed(request: HttpRequest) -> HttpResponse:
    """Where the provider's round trip ends when the portal did not sign the person in."""
    refusal = request.session.pop(REFUSAL_SESSION_KEY, None)
    if refusal:
        return render(
            request,
            "accounts/refused.html",
            {"refusal": Refusal(refusal["code"], refusal["message"]), "signed_out": True},
            status=403,
        )
    return render(request, "accounts/login_failed.html", status=401)


@public_view
@never_cache
@require_http_methods(["GET", "POST"])
def logout_view(request: HttpRequest) -> HttpResponse:
    """Sign out here and, for provider sign-ins, at the provider (RP-initiated logout)."""
    if request.method == "GET":
        if not request.user.is_authenticated:
            return redirect("login")
        return render(request, "accounts/logout.html")
    target = provider_logout_url(request) if request.user.is_authenticated else reverse("login")
    auth.logout(request)
    return HttpResponseRedirect(target)


T = TypeVar("T")


def _submit_code(
    request: HttpRequest, form: CodeForm, check: Callable[[str], T]
) -> tuple[T | None, int]:
    """Run ``check`` on a posted code: its result and 200, or None and the status to answer
    with (the form then carries the error; 429 while wrong codes are throttled)."""
    if request.method != "POST":
        return None, 200
    if not form.is_valid():
        return None, 400
    try:
        return check(form.cleaned_data["code"]), 200
    except SecondFactorError as exc:
        form.add_error("code", str(exc))
        return None, 429 if exc.code == "throttled" else 400


def _passed(request: HttpRequest, method: str) -> None:
    request.session.cycle_key()  # a new session id once the sign-in is complete
    second_factor_mark(request, method)


@signed_in_view
@never_cache
@require_http_methods(["GET", "POST"])
def second_factor(request: HttpRequest) -> HttpResponse:
    """Ask for a code from the authenticator app (or a backup code)."""
    user = _user(request)
    next_url = _next_url(request)
    if second_factor_passed(request):
        return HttpResponseRedirect(next_url)
    if totp_device_confirmed(user) is None and second_factor_enrolment_open(user):
        return _with_next("second-factor-setup", next_url)
    form = CodeForm(request.POST or None)
    method, status = _submit_code(request, form, lambda code: second_factor_verify(user, code))
    if method is not None:
        _passed(request, method)
        if method == "backup_code":
            left = backup_codes_left(user)
            messages.warning(
                request, f"You used a backup code: {left} left. Make new ones on your account page."
            )
        return HttpResponseRedirect(next_url)
    context = {
        "form": form,
        "next": next_url,
        "reset_form": CodeForm(),
        "no_device": totp_device_confirmed(user) is None,
    }
    return render(request, "accounts/second_factor.html", context, status=status)


@signed_in_view
@never_cache
@require_http_methods(["GET", "POST"])
def second_factor_setup(request: HttpRequest) -> HttpResponse:
    """First sign-in: scan the QR code (or type the key), confirm with a code, keep the
    backup codes."""
    user = _user(request)
    next_url = _next_url(request)
    if totp_device_confirmed(user) is not None or not second_factor_enrolment_open(user):
        # Replacing (or adding) an authenticator after the first sign-in takes a backup code
        # (the reset form) or staff, never just the first factor.
        return _with_next("second-factor", next_url)
    form = CodeForm(request.POST or None)
    codes, status = _submit_code(request, form, lambda code: totp_confirm(user, code))
    if codes is not None:
        _passed(request, "totp")
        return render(request, "accounts/backup_codes.html", {"codes": codes, "next": next_url})
    context = {"form": form, "enrolment": totp_enrolment(user), "next": next_url}
    return render(request, "accounts/second_factor_setup.html", context, status=status)


@signed_in_view
@require_POST
def second_factor_reset(request: HttpRequest) -> HttpResponse:
    """Lost the authenticator: a backup code removes it, then the set-up starts again."""
    user = _user(request)
    form = CodeForm(request.POST)

    def reset(code: str) -> bool:
        second_factor_reset_with_backup_code(user, code)
        return True

    done, status = _submit_code(request, form, reset)
    if done:
        messages.info(request, "Your authenticator was removed: set up a new one.")
        return redirect("second-factor-setup")
    context = {"form": CodeForm(), "next": _next_url(request), "reset_form": form}
    return render(request, "accounts/second_factor.html", context, status=status)


def _account_page(request: HttpRequest, **extra: Any) -> HttpResponse:
    user = _user(request)
    status = extra.pop("status", 200)
    tokens = tokens_live_for(user)
    context = {
        "tokens": tokens,
        "token_form": extra.pop("token_form", TokenCreateForm()),
        "method": second_factor_method(request),
        "backup_codes_left": backup_codes_left(user),
        **extra,
    }
    return render(request, "accounts/account.html", context, status=status)


@never_cache
@require_http_methods(["GET"])
def account(request: HttpRequest) -> HttpResponse:
    """The second factor's state and the user's API tokens."""
    return _account_page(request)


@never_cache  # the page shows the new token
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    form = TokenCreateForm(request.POST)
    if not form.is_valid():
        return _account_page(request, token_form=form, status=400)
    raw = token_issue(
        user=_user(request),
        name=form.cleaned_data["name"],
        days=form.cleaned_data["lifetime_days"],
    )
    return _account_page(request, new_token=raw)


@require_POST
def token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    token = tokens_live_for(_user(request)).filter(pk=token_id).first()
    if token is None:
        return _account_page(request, error="No such token.", status=404)
    token_revoke(token)
    messages.success(request, f"Token {token.prefix}… revoked.")
    return redirect("account")


@never_cache  # the page shows the codes
@require_POST
def backup_codes_new(request: HttpRequest) -> HttpResponse:
    codes = backup_codes_renew(_user(request))
    return render(request, "accounts/backup_codes.html", {"codes": codes, "next": "/account/"})
