"""Password sign-in is throttled per account name and per client address: each wrong password
doubles the wait (capped), a waiting attempt is refused with 429 and Retry-After without
running the password hasher, and the right password waits too."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.hashers import MD5PasswordHasher
from django.contrib.auth.models import User
from django.test.client import Client as DjangoClient

from accounts_app.models import SignInFailures
from tests.conftest import PASSWORD, _make_user

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SIGN_IN_MAX = 900


class CountingHasher(MD5PasswordHasher):
    """A real (fast) hasher that counts its work: each call is what a guess costs the portal."""

    algorithm = "counting_md5"
    calls = 0

    def encode(self, password: str, salt: str) -> str:
        CountingHasher.calls += 1
        return super().encode(password, salt)


@pytest.fixture
def person(settings: Any) -> User:
    settings.PASSWORD_HASHERS = ["tests.accounts_app.test_sign_in_throttle.CountingHasher"]
    settings.SIGN_IN_MAX_WAIT_SECONDS = SIGN_IN_MAX
    settings.SIGN_IN_ADDRESS_FREE_FAILURES = 20
    user = _make_user("person")
    CountingHasher.calls = 0
    return user


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def _sign_in(username: str, password: str, address: str = "192.0.2.1") -> Any:
    return DjangoClient().post(
        "/login/", {"username": username, "password": password}, REMOTE_ADDR=address
    )


def _wait_of(response: Any) -> int:
    assert response.status_code == 429
    return int(response["Retry-After"])


def test_forty_wrong_passwords_then_the_right_one_waits_out_the_doubling(
    person: User, clock: time_machine.Traveller
) -> None:
    # Given 40 wrong passwords, each tried once the wait of the one before had passed
    waits: list[int] = []
    for _ in range(40):
        if waits:
            clock.shift(timedelta(seconds=waits[-1]))
        assert _sign_in("person", "wrong").status_code == 200
        waits.append(_wait_of(_sign_in("person", "wrong")))
    assert waits[:11] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900]
    assert set(waits[11:]) == {900}
    hashed = CountingHasher.calls

    # When the right password comes at once, then a second before the wait ends
    at_once = _sign_in("person", PASSWORD)
    clock.shift(timedelta(seconds=899))
    almost = _sign_in("person", PASSWORD)

    # Then both are refused with the wait, on the page and in Retry-After, costing no hash
    assert _wait_of(at_once) == 900
    assert "wait 900 seconds" in at_once.content.decode()
    assert _wait_of(almost) == 1
    assert CountingHasher.calls == hashed
    # And once the wait is over, the right password signs in
    clock.shift(timedelta(seconds=1))
    signed_in = _sign_in("person", PASSWORD)
    assert signed_in.status_code == 302
    assert signed_in["Location"].startswith("/account/second-factor/")


def test_refused_guesses_cost_no_hash(person: User, clock: time_machine.Traveller) -> None:
    for _ in range(5):
        clock.shift(timedelta(seconds=60))
        _sign_in("person", "wrong")
    hashed = CountingHasher.calls

    responses = [_sign_in("person", f"guess-{n}") for n in range(100)]

    assert {response.status_code for response in responses} == {429}
    assert CountingHasher.calls == hashed


def test_the_account_waits_whatever_the_address(
    person: User, clock: time_machine.Traveller
) -> None:
    # Given four wrong passwords from one address
    for wait in (1, 2, 4):
        assert _sign_in("person", "wrong", address="192.0.2.1").status_code == 200
        clock.shift(timedelta(seconds=wait))
    assert _sign_in("person", "wrong", address="192.0.2.1").status_code == 200

    # When the right password comes from another address at once
    response = _sign_in("person", PASSWORD, address="198.51.100.7")

    # Then it waits as long (2^3 s)
    assert _wait_of(response) == 8
    clock.shift(timedelta(seconds=8))
    assert _sign_in("person", PASSWORD, address="198.51.100.7").status_code == 302


def test_an_address_that_sprays_many_names_waits_for_every_account(
    person: User, clock: time_machine.Traveller
) -> None:
    # Given the free failures of one address used up on made-up names, and one more
    for n in range(21):
        assert _sign_in(f"guess-{n}", "wrong").status_code == 200

    # When a real account signs in from that address, and from another
    from_sprayer = _sign_in("person", PASSWORD)
    from_elsewhere = _sign_in("person", PASSWORD, address="198.51.100.7")

    # Then the sprayer's address waits; the account itself is fine elsewhere
    assert _wait_of(from_sprayer) == 1
    assert from_elsewhere.status_code == 302


def test_people_who_sign_in_rightly_do_not_lock_out_their_shared_address(
    person: User, clock: time_machine.Traveller
) -> None:
    # Given an address (a NAT) past its free failures (21 counted: then it waits), its wait over
    for n in range(25):
        _sign_in(f"guess-{n}", "wrong")
    clock.shift(timedelta(seconds=SIGN_IN_MAX))
    last_failure = SignInFailures.objects.get(scope="address").last_failure_at
    _make_user("neighbour")

    # When two people behind it sign in with their right passwords in the same second
    first = _sign_in("person", PASSWORD)
    second = _sign_in("neighbour", PASSWORD)

    # Then both are in, and the address's failures are not renewed by them
    assert (first.status_code, second.status_code) == (302, 302)
    address = SignInFailures.objects.get(scope="address")
    assert (address.failures, address.last_failure_at) == (21, last_failure)
    # while one more wrong password from there waits again
    _sign_in("guess-x", "wrong")
    assert _wait_of(_sign_in("neighbour", PASSWORD)) == 2


def test_made_up_and_real_names_answer_alike(person: User, clock: time_machine.Traveller) -> None:
    # The throttle tells nothing about which accounts exist.
    for username in ("person", "nobody-here"):
        _sign_in(username, "wrong", address="198.51.100.1")
        clock.shift(timedelta(seconds=1))
        _sign_in(username, "wrong", address="198.51.100.1")

        assert _wait_of(_sign_in(username, "wrong", address="198.51.100.1")) == 2


def test_the_right_password_starts_the_account_again_from_zero(
    person: User, clock: time_machine.Traveller
) -> None:
    for _ in range(6):
        _sign_in("person", "wrong")
        clock.shift(timedelta(seconds=32))
    assert _sign_in("person", PASSWORD).status_code == 302

    _sign_in("person", "wrong")

    assert _wait_of(_sign_in("person", PASSWORD)) == 1


def test_failures_are_forgotten_an_hour_after_the_last(
    person: User, clock: time_machine.Traveller
) -> None:
    for _ in range(6):
        _sign_in("person", "wrong")
        clock.shift(timedelta(seconds=32))
    clock.shift(timedelta(hours=1))

    _sign_in("person", "wrong")

    assert _wait_of(_sign_in("person", "wrong")) == 1
    row = SignInFailures.objects.get(scope=SignInFailures.Scope.ACCOUNT)
    assert row.failures == 1


def test_a_refused_attempt_is_logged(
    person: User, clock: time_machine.Traveller, caplog: pytest.LogCaptureFixture
) -> None:
    _sign_in("person", "wrong", address="203.0.113.9")

    with caplog.at_level(logging.WARNING, logger="accounts_app.sign_in_throttle"):
        _sign_in("person", PASSWORD, address="203.0.113.9")

    assert "password sign-in refused for 1 s: account 'person' from 203.0.113.9" in caplog.text


def test_a_form_without_a_password_is_not_counted(
    person: User, clock: time_machine.Traveller
) -> None:
    for _ in range(3):
        assert _sign_in("person", "").status_code == 200

    assert not SignInFailures.objects.exists()
    assert _sign_in("person", PASSWORD).status_code == 302
