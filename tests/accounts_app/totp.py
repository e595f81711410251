"""What an authenticator app computes: the current code of a TOTP key (RFC 6238)."""

from __future__ import annotations

import base64
import time

from django_otp.oath import TOTP


def totp_code(key_base32: str, steps_ahead: int = 0) -> str:
    """The code an app shows for ``key_base32`` now (or ``steps_ahead`` steps of 30 s later).

    django-otp refuses a code twice and accepts one step of drift, so a test that signs in
    twice within 30 s uses the next step's code the second time.
    """
    padded = key_base32 + "=" * (-len(key_base32) % 8)
    totp = TOTP(base64.b32decode(padded), step=30, digits=6)
    totp.time = time.time() + 30 * steps_ahead
    return f"{totp.token():06d}"
