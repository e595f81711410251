"""The names a session gets outside the database (``sessions_app.spawners.names``), as properties:
valid where they go, and never shared by two users, whatever the usernames look like, also
usernames shaped like another's made name."""

from __future__ import annotations

import uuid

from hypothesis import assume, given
from hypothesis import strategies as st

from sessions_app.spawners.names import (
    digest,
    home_claim_name,
    label_value,
    route_name,
    session_name,
)
from tests.kube_checks import dns1035_label_problems, label_value_problems

# Any text, and texts made to look like names the makers produce (kept and made shapes).
_hex = st.text("0123456789abcdef", min_size=1, max_size=20)
_shaped = st.one_of(
    st.builds(
        lambda a, h: f"{a}-{h}", st.from_regex(r"[a-z]{1,8}(-[a-z]{1,3})?", fullmatch=True), _hex
    ),
    st.builds(lambda a, h: f"{a}---{h}", st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True), _hex),
    st.builds(lambda t: label_value(t), st.text(max_size=80)),
    st.builds(lambda t: route_name(t), st.text(max_size=80)),
)
usernames = st.one_of(st.text(max_size=200), _shaped)


@given(usernames, usernames)
def test_two_usernames_never_share_a_label_value(first: str, second: str) -> None:
    assume(first != second)

    assert label_value(first) != label_value(second)


@given(usernames, usernames)
def test_two_usernames_never_share_a_route(first: str, second: str) -> None:
    assume(first != second)

    assert route_name(first) != route_name(second)
    assert label_value(route_name(first)) != label_value(route_name(second))


@given(usernames, usernames, st.uuids(), st.uuids())
def test_two_sessions_never_share_an_object_name(
    first: str, second: str, one: uuid.UUID, other: uuid.UUID
) -> None:
    assume(one != other)

    assert session_name(first, str(one)) != session_name(second, str(other))
    assert session_name(first, str(one)) != session_name(first, str(other))


@given(usernames)
def test_every_label_value_and_name_is_valid(text: str) -> None:
    assert label_value_problems(label_value(text), "label") == []
    assert len(label_value(text)) <= 63
    assert dns1035_label_problems(session_name(text, str(uuid.uuid4())), "name") == []
    assert dns1035_label_problems(session_name(text, text), "name") == []


@given(st.text(max_size=80))
def test_a_username_shaped_like_a_made_label_gets_a_label_of_its_own(text: str) -> None:
    made = label_value(text)
    assume(made != text)

    assert label_value(made) != made


def test_the_reviews_collision_is_gone() -> None:
    # "foo x" used to become "foo-x-<10 hex digits>", which the username spelled that way
    # kept as it was: the same user label for two users.
    victim = "foo x"
    old_shape = f"foo-x-{digest(victim, 10)}"

    assert label_value(victim) != label_value(old_shape)
    assert label_value(old_shape) == old_shape  # an ordinary username is still itself


def test_ordinary_names_stay_as_they_are() -> None:
    assert label_value("alice") == "alice"
    assert label_value("Alice.Smith_2") == "Alice.Smith_2"
    assert route_name("alice") == "alice"
    assert label_value("5b0f3f4e-8d1c-4c3a-9a57-2f8f0e6f4c11") == (
        "5b0f3f4e-8d1c-4c3a-9a57-2f8f0e6f4c11"
    )


def test_made_names_stay_readable() -> None:
    assert label_value("alice.smith@example.org").startswith("alice-smith-example-org---")
    session = "5b0f3f4e-8d1c-4c3a-9a57-2f8f0e6f4c11"
    assert session_name("First.Last", session) == (
        "jupyter-first-last-5b0f3f4e8d1c4c3a9a572f8f0e6f4c11"
    )


def test_home_claim_names_did_not_change() -> None:
    # A new name would leave every user's home volume behind.
    assert home_claim_name("u~42") == f"home-u-42-{digest('u~42', 10)}"
