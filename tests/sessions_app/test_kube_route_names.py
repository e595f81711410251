"""No route a username can take from another: a safe username is its own route, a hashed one
cannot be taken by a username shaped like it, and different usernames get different routes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sessions_app.spawners.base import route_name


def test_safe_usernames_are_their_own_route() -> None:
    assert route_name("alice") == "alice"
    assert route_name("Bob_2") == "Bob_2"


def test_a_username_cannot_take_the_route_of_a_hashed_one() -> None:
    hashed = route_name("alice.smith@example.org")

    assert hashed.startswith("alice-smith-example-org-")
    assert route_name(hashed) != hashed  # chosen as a username, it is hashed again


@given(st.text(max_size=80), st.text(max_size=80))
def test_different_usernames_get_different_routes(first: str, second: str) -> None:
    if first != second:
        assert route_name(first) != route_name(second)
