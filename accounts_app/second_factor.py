"""The second factor: an authenticator app (TOTP) plus single-use backup codes.

Devices are django-otp's (their throttling slows guessing: each wrong code doubles the wait).
Whether this browser session has passed the second factor is kept in the session, with how:
``totp``, ``backup_code`` or ``provider`` (the identity provider asserted multi-factor
authentication in its ``amr``/``acr`` claims).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import segno
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts_app.browser_sessions import user_sessions_end
from accounts_app.models import SecondFactorEstablished, SecondFactorReset
from portal.errors import ServiceError
from portal.tokens import RevokedBecause, tokens_revoke_all

SESSION_KEY = "portal_second_factor"
DEVICE_NAME = "Authenticator app"
BACKUP_DEVICE_NAME = "Backup codes"


class SecondFactorError(ServiceError):
    """A code that can't be accepted."""


@dataclass(frozen=True)
class Enrolment:
    """What the set-up page shows: the key as a QR code and as text."""

    device: TOTPDevice
    key_base32: str
    otpauth_uri: str
    qr_svg: str


# --- The browser session ---------------------------------------------------------------------


def second_factor_passed(request: HttpRequest) -> bool:
    return bool(request.session.get(SESSION_KEY))


def second_factor_mark(request: HttpRequest, method: str) -> None:
    request.session[SESSION_KEY] = method
    if request.user.is_authenticated:
        SecondFactorEstablished.objects.get_or_create(
            user_id=request.user.pk,
            defaults={"established_at": timezone.now(), "method": method},
        )


def second_factor_enrolment_open(user: AbstractBaseUser) -> bool:
    """Whether ``user`` may set up an authenticator without one: only before they have ever
    passed a second factor here, or after a reset (a backup code or staff). Otherwise whoever
    holds just the first factor could enrol their own device."""
    return not SecondFactorEstablished.objects.filter(user_id=user.pk).exists()


def second_factor_confirmed(user: AbstractBaseUser) -> bool:
    """Whether ``user`` has a second factor here: a confirmed authenticator, or a second
    factor passed since the last reset (the provider's multi-factor claim counts)."""
    return (
        totp_device_confirmed(user) is not None
        or SecondFactorEstablished.objects.filter(user_id=user.pk).exists()
    )


def second_factor_method(request: HttpRequest) -> str:
    return str(request.session.get(SESSION_KEY, ""))


# --- Devices ---------------------------------------------------------------------------------


def totp_device_confirmed(user: AbstractBaseUser) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).first()


def backup_codes_left(user: AbstractBaseUser) -> int:
    return StaticToken.objects.filter(device__user_id=user.pk, device__confirmed=True).count()


def totp_enrolment(user: AbstractBaseUser) -> Enrolment:
    """The pending (unconfirmed) authenticator of ``user``, created on first call.

    The same key is shown until it is confirmed, so reloading the page does not invalidate
    what the user already scanned.
    """
    device = TOTPDevice.objects.filter(user_id=user.pk, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user_id=user.pk, name=DEVICE_NAME, confirmed=False)
    key_base32 = base64.b32encode(device.bin_key).decode().rstrip("=")
    uri = device.config_url
    qr_svg = segno.make(uri, error="m").svg_inline(scale=4, title="Authenticator set-up code")
    return Enrolment(device=device, key_base32=key_base32, otpauth_uri=uri, qr_svg=qr_svg)


def _normalise(code: str) -> str:
    return "".join(code.split()).lower()


def _throttle_error(device: Any) -> SecondFactorError | None:
    allowed, data = device.verify_is_allowed()
    if allowed:
        return None
    locked_until = (data or {}).get("locked_until")
    wait = ""
    if locked_until is not None:
        seconds = max(1, int((locked_until - timezone.now()).total_seconds()) + 1)
        wait = f" Wait {seconds} seconds before trying again."
    return SecondFactorError("Too many wrong codes." + wait, "throttled")


def _verify_totp(device: TOTPDevice, code: str) -> bool:
    throttled = _throttle_error(device)
    if throttled is not None:
        raise throttled
    return bool(device.verify_token(code))


def _issue_backup_codes(user: AbstractBaseUser) -> list[str]:
    """Replace the user's backup codes with new ones, returned once and never shown again."""
    StaticDevice.objects.filter(user_id=user.pk).delete()
    device = StaticDevice.objects.create(user_id=user.pk, name=BACKUP_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(settings.SECOND_FACTOR_BACKUP_CODES)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def totp_confirm(user: AbstractBaseUser, code: str) -> list[str]:
    """Confirm the pending authenticator with a code from it; returns the new backup codes."""
    code = _normalise(code)
    with transaction.atomic():
        device = (
            TOTPDevice.objects.select_for_update().filter(user_id=user.pk, confirmed=False).first()
        )
        if device is None:
            raise SecondFactorError(
                "There is no authenticator waiting to be set up: reload the page.", "no_device"
            )
        # A wrong code must still count against the throttle: no exception in this block.
        confirmed = code.isdigit() and _verify_totp(device, code)
        if confirmed:
            TOTPDevice.objects.filter(user_id=user.pk).exclude(pk=device.pk).delete()
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            return _issue_backup_codes(user)
    raise SecondFactorError(
        "That code is not right: type the 6 digits your app shows now.", "wrong_code"
    )


def _use_backup_code(user: AbstractBaseUser, code: str) -> bool:
    with transaction.atomic():
        device = (
            StaticDevice.objects.select_for_update().filter(user_id=user.pk, confirmed=True).first()
        )
        if device is None:
            return False
        throttled = _throttle_error(device)
        if throttled is not None:
            raise throttled
        return bool(device.verify_token(code))


def second_factor_verify(user: AbstractBaseUser, code: str) -> str:
    """Check a code from the authenticator app or a backup code; returns which it was.

    A backup code works once. Wrong codes are throttled per device.
    """
    code = _normalise(code)
    if not code:
        raise SecondFactorError("Type a code.", "required")
    device = totp_device_confirmed(user)
    if code.isdigit():
        if device is not None:
            with transaction.atomic():
                locked = TOTPDevice.objects.select_for_update().get(pk=device.pk)
                if _verify_totp(locked, code):
                    return "totp"
    elif _use_backup_code(user, code):
        return "backup_code"
    raise SecondFactorError("That code is not right.", "wrong_code")


def backup_codes_renew(user: AbstractBaseUser) -> list[str]:
    """New backup codes for a user who passed the second factor; the old ones stop working."""
    with transaction.atomic():
        return _issue_backup_codes(user)


def _remove_devices(user: AbstractBaseUser) -> None:
    TOTPDevice.objects.filter(user_id=user.pk).delete()
    StaticDevice.objects.filter(user_id=user.pk).delete()
    SecondFactorEstablished.objects.filter(user_id=user.pk).delete()


def second_factor_reset_with_backup_code(user: AbstractBaseUser, code: str) -> None:
    """A user who lost their authenticator removes it with a backup code, then sets up anew."""
    code = _normalise(code)
    if not code or code.isdigit() or not _use_backup_code(user, code):
        raise SecondFactorError("That backup code is not right.", "wrong_code")
    with transaction.atomic():
        _remove_devices(user)
        SecondFactorReset.objects.create(
            user_id=user.pk, method=SecondFactorReset.Method.BACKUP_CODE, reset_at=timezone.now()
        )


def second_factor_reset_by_staff(
    *, user: AbstractBaseUser, reset_by: AbstractBaseUser, note: str = ""
) -> SecondFactorReset:
    """Staff remove a user's second factor; the user sets up a new one at the next sign-in.

    Whatever the old second factor let in goes with it: the user's API tokens are revoked and
    their browser sessions end (they sign in again, password and new authenticator).
    """
    with transaction.atomic():
        _remove_devices(user)
        tokens_revoke_all(user, RevokedBecause.SECOND_FACTOR_RESET)
        user_sessions_end(user)
        return SecondFactorReset.objects.create(
            user_id=user.pk,
            method=SecondFactorReset.Method.STAFF,
            reset_by_id=reset_by.pk,
            reset_at=timezone.now(),
            note=note,
        )
