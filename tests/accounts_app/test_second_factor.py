"""The second factor in the browser: set-up on first sign-in, codes later, backup codes,
throttling, and a self-service reset."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts_app.models import SecondFactorReset
from accounts_app.second_factor import SESSION_KEY
from sessions_app.models import Environment
from tests.accounts_app.totp import totp_code
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r'<code class="totp-key" id="totp-key">([A-Z2-7]+)</code>')
CODES_RE = re.compile(r"<li><code>([a-z2-7]{8})</code></li>")


def _password_login(client: Client, username: str, next_url: str = "/") -> str:
    response = client.post(
        "/login/", {"username": username, "password": PASSWORD, "next": next_url}
    )
    assert response.status_code == 302
    return str(response["Location"])


def _enrol(client: Client) -> tuple[str, list[str]]:
    page = client.get("/account/second-factor/setup/").content.decode()
    key = KEY_RE.search(page)
    assert key is not None, page
    response = client.post("/account/second-factor/setup/", {"code": totp_code(key.group(1))})
    assert response.status_code == 200
    codes = CODES_RE.findall(response.content.decode())
    return key.group(1), codes


def test_first_sign_in_sets_up_an_authenticator_and_shows_ten_backup_codes(
    client: Client, owner: User, environment: Environment
) -> None:
    location = _password_login(client, "owner", "/session/")
    assert location == "/account/second-factor/?next=%2Fsession%2F"
    # No device yet: the code page sends the user to the set-up.
    response = client.get(location)
    assert response["Location"] == "/account/second-factor/setup/?next=%2Fsession%2F"

    page = client.get(response["Location"]).content.decode()
    assert "<svg" in page  # the QR code
    key = KEY_RE.search(page)
    assert key is not None
    # Reloading shows the same key: what the user scanned stays valid.
    reloaded = KEY_RE.search(client.get("/account/second-factor/setup/").content.decode())
    assert reloaded is not None and reloaded.group(1) == key.group(1)

    response = client.post(
        "/account/second-factor/setup/", {"code": totp_code(key.group(1)), "next": "/session/"}
    )
    codes = CODES_RE.findall(response.content.decode())
    assert len(codes) == 10 and len(set(codes)) == 10
    assert 'href="/session/"' in response.content.decode()
    assert client.session[SESSION_KEY] == "totp"
    assert TOTPDevice.objects.get(user=owner).confirmed
    assert client.get("/").status_code == 200


def test_a_wrong_set_up_code_is_refused_and_nothing_is_confirmed(
    client: Client, owner: User
) -> None:
    _password_login(client, "owner")
    client.get("/account/second-factor/setup/")

    response = client.post("/account/second-factor/setup/", {"code": "000000"})

    assert response.status_code == 400
    assert "That code is not right" in response.content.decode()
    assert not TOTPDevice.objects.filter(user=owner, confirmed=True).exists()
    assert SESSION_KEY not in client.session
    assert client.get("/")["Location"].startswith("/account/second-factor/")


def test_later_sign_ins_ask_for_a_code(
    client: Client, owner: User, environment: Environment
) -> None:
    _password_login(client, "owner")
    key, _ = _enrol(client)
    client.post("/logout/")

    location = _password_login(client, "owner")
    page = client.get(location).content.decode()
    assert "Enter your code" in page
    # The set-up page can't be used to replace a working authenticator with only a password.
    assert client.get("/account/second-factor/setup/")["Location"].startswith(
        "/account/second-factor/"
    )
    response = client.post(
        "/account/second-factor/", {"code": totp_code(key, steps_ahead=1), "next": "/"}
    )
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_wrong_codes_are_throttled(client: Client, owner: User) -> None:
    _password_login(client, "owner")
    key, _ = _enrol(client)
    client.post("/logout/")
    _password_login(client, "owner")

    first = client.post("/account/second-factor/", {"code": "000000"})
    second = client.post("/account/second-factor/", {"code": totp_code(key, steps_ahead=1)})

    assert first.status_code == 400
    # Right code, but too soon after a wrong one: the wait doubles with each failure.
    assert second.status_code == 429
    assert "Too many wrong codes" in second.content.decode()
    assert SESSION_KEY not in client.session


def test_a_backup_code_works_once(client: Client, owner: User, environment: Environment) -> None:
    _password_login(client, "owner")
    _, codes = _enrol(client)
    client.post("/logout/")

    _password_login(client, "owner")
    response = client.post("/account/second-factor/", {"code": codes[0].upper(), "next": "/"})
    assert response.status_code == 302
    assert client.session[SESSION_KEY] == "backup_code"
    assert StaticToken.objects.filter(device__user=owner).count() == 9
    client.post("/logout/")

    _password_login(client, "owner")
    again = client.post("/account/second-factor/", {"code": codes[0]})
    assert again.status_code == 400
    assert SESSION_KEY not in client.session


def test_a_lost_authenticator_is_reset_with_a_backup_code(
    client: Client, owner: User, environment: Environment
) -> None:
    _password_login(client, "owner")
    old_key, codes = _enrol(client)
    client.post("/logout/")
    _password_login(client, "owner")

    response = client.post("/account/second-factor/reset/", {"code": codes[3]})

    assert response["Location"] == "/account/second-factor/setup/"
    assert not TOTPDevice.objects.filter(user=owner).exists()
    reset = SecondFactorReset.objects.get(user=owner)
    assert reset.method == "backup_code" and reset.reset_by is None
    new_key, new_codes = _enrol(client)
    assert new_key != old_key and codes[4] not in new_codes
    assert client.get("/").status_code == 200


def test_a_wrong_backup_code_resets_nothing(client: Client, owner: User) -> None:
    _password_login(client, "owner")
    _enrol(client)
    client.post("/logout/")
    _password_login(client, "owner")

    response = client.post("/account/second-factor/reset/", {"code": "notacode"})

    assert response.status_code == 400
    assert "That backup code is not right" in response.content.decode()
    assert TOTPDevice.objects.filter(user=owner, confirmed=True).exists()
    assert not SecondFactorReset.objects.exists()
