"""Authorization matrix: every page and API endpoint × every kind of caller → the expected answer.

The routes come from the URL configuration itself, so a new endpoint without a rule in
``tests/matrix_rules.py`` fails ``test_every_route_has_a_rule``. Each rule is then requested
as each actor (``test_route_answers_actor_as_the_policy_says``), in its own database
transaction. No Celery worker runs and no server starts: launches either stop at the guard, at
the terms, or at an unknown environment. The staff roles' rules for the admin's actions and
forms (``tests/matrix_staff.py``) also read back whether the change was made.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal.models import ApiToken
from sessions_app.models import Environment, Session
from suspension_app.services import suspension_impose
from terms_app.models import TermsVersion
from terms_app.services import terms_accept
from tests.conftest import login_verified
from tests.matrix_rules import (
    ACTORS,
    ADMIN_PATTERN,
    ADMIN_PATTERN_EXPECT,
    ANON,
    EXCLUDED,
    FORBIDDEN,
    KNOWN_BUGS,
    OK,
    OTHERS,
    OUTSIDER,
    RULES,
    STAFF,
    STAFF_ROLES,
    SUSPENDED,
    SUSPENSION_REASON,
    TERMS,
    UNVERIFIED,
    Expect,
    Rule,
    World,
    role_holds,
)
from tests.matrix_staff import STAFF_RULES

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

# --- The routes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One URL pattern: ``key`` is its full name (``namespace:name``), or its path if unnamed."""

    key: str
    path: str
    view_module: str


def _walk(resolver: URLResolver, prefix: str = "", namespace: str = "") -> Iterator[Route]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            path = prefix + str(entry.pattern)
            key = f"{namespace}{entry.name}" if entry.name else path
            callback = entry.callback
            module = getattr(getattr(callback, "view_class", callback), "__module__", "")
            yield Route(key, path, module)


def all_routes() -> dict[str, Route]:
    return {route.key: route for route in _walk(get_resolver())}


def _covered_by_admin_pattern(key: str) -> bool:
    return key.startswith(ADMIN_PATTERN)


def admin_changelist_rules() -> list[Rule]:
    """Every model registered with the admin: its list is requested too. A staff role sees
    it with the model's view or change permission."""
    rules = []
    for app_label, model_name in sorted(
        (model._meta.app_label, model._meta.model_name) for model in admin.site._registry
    ):
        perms = (f"{app_label}.view_{model_name}", f"{app_label}.change_{model_name}")
        roles = {
            role: OK if any(role_holds(role, perm) for perm in perms) else FORBIDDEN
            for role in STAFF_ROLES
        }
        name = f"admin:{app_label}_{model_name}_changelist"
        rules.append(Rule(name, "GET", {**ADMIN_PATTERN_EXPECT, **roles}))
    return rules


ALL_RULES = [*RULES, *STAFF_RULES, *admin_changelist_rules()]


def test_every_route_has_a_rule() -> None:
    found = set(all_routes()) - set(EXCLUDED)
    with_rules = {rule.route for rule in ALL_RULES}
    missing = sorted(k for k in found - with_rules if not _covered_by_admin_pattern(k))
    extra = sorted(with_rules - found)
    assert not missing, (
        "Routes without a rule in tests/matrix_rules.py (say what each actor gets): "
        + ", ".join(missing)
    )
    assert not extra, "Rules for routes that no longer exist: " + ", ".join(extra)
    assert not set(EXCLUDED) - set(all_routes()), "EXCLUDED names routes that do not exist"


def test_project_admin_views_are_requested_not_only_covered_by_the_pattern() -> None:
    # Django's own admin views share one guard; a view this project adds to the admin
    # (``get_urls``, an override) is new code and must be requested by name.
    requested = {rule.route for rule in ALL_RULES}
    ours = sorted(
        route.key
        for route in all_routes().values()
        if _covered_by_admin_pattern(route.key)
        and not route.view_module.startswith("django.")
        and route.key not in requested
    )
    assert not ours, "Admin views of this project without their own rule: " + ", ".join(ours)


def test_every_rule_says_what_every_actor_gets() -> None:
    incomplete = [
        f"{rule.route} {rule.method}: {sorted(set(ACTORS) - set(rule.expect))}"
        for rule in ALL_RULES
        if set(rule.expect) != set(ACTORS)
    ]
    assert not incomplete, "Rules without an answer for every actor: " + "; ".join(incomplete)


# --- The actors -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    # Hundreds of cases each make a few users: the production hasher would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _accept(user: User, terms: TermsVersion) -> None:
    terms_accept(user=user, version=terms.version, ip_address="127.0.0.1", user_agent="matrix")


def _build_world(request: pytest.FixtureRequest, actor: str, client: Client) -> World:
    """Make the actor's user and state, sign them in on ``client``, and plant the objects."""
    fixture = request.getfixturevalue
    environment: Environment = fixture("environment")
    terms: TermsVersion = fixture("terms")  # published for everyone; who accepted it varies
    owner: User = fixture("owner")
    other: User = fixture("other_user")
    staff: User = fixture("staff")
    user: User | None
    if actor == ANON:
        user = None
    elif actor == UNVERIFIED:
        user = staff
        client.force_login(staff)  # signed in, second factor not passed
    elif actor == OUTSIDER:
        user = fixture("outsider")
        login_verified(client, user)
    elif actor == TERMS:
        user = owner
        login_verified(client, owner)
    elif actor == SUSPENDED:
        user = staff
        duty = get_user_model().objects.create_user("duty-officer", is_staff=True)
        suspension_impose(user=staff, reason=SUSPENSION_REASON, imposed_by=duty)
        login_verified(client, staff)
    elif actor == OTHERS:
        user = owner
        _accept(owner, terms)
        login_verified(client, owner)
    elif actor == STAFF:
        user = staff
        _accept(staff, terms)
        login_verified(client, staff)
    elif actor in STAFF_ROLES:
        user = get_user_model().objects.create_user(
            actor, email=f"{actor}@example.org", is_staff=True
        )
        user.user_permissions.set(
            perm
            for perm in Permission.objects.select_related("content_type")
            if role_holds(actor, f"{perm.content_type.app_label}.{perm.codename}")
        )
        _accept(user, terms)
        login_verified(client, user)
    else:  # pragma: no cover - a typo in ACTORS
        raise AssertionError(actor)
    if user is not None:
        TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    world = World(
        actor=actor,
        user=user,
        target=other if actor == OTHERS else (user or owner),
        bystander=other,
        staff=staff,
        environment=environment,
    )
    if actor == OTHERS:
        # What must stay invisible and untouched: the other user's token and running session.
        world.planted["token"] = world.token
        world.planted["session"] = world.running_session(other)
    return world


# --- The request and its check ----------------------------------------------------------------


def _send(client: Client, method: str, url: str, data: Any, headers: Mapping[str, str]) -> Response:
    if url.startswith("/api/"):
        body = json.dumps(data) if data is not None else None
        return client.generic(
            method, url, body or "", content_type="application/json", headers=headers
        )
    if method == "GET":
        return client.get(url, headers=headers)
    if method == "POST":
        return client.post(url, data or {}, headers=headers)
    return client.generic(method, url, headers=headers)


async def _streamed(response: Any) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


def _text(response: Response) -> str:
    if getattr(response, "streaming", False):  # the session page's event stream
        if not hasattr(response, "_matrix_body"):
            response._matrix_body = async_to_sync(_streamed)(response)  # type: ignore[attr-defined]
        content: bytes = response._matrix_body  # type: ignore[attr-defined]
    else:
        content = response.content
    return html.unescape(content.decode(errors="replace"))


def _check(response: Response, expect: Expect, url: str, client: Client, where: str) -> None:
    body = _text(response)
    assert response.status_code == expect.status, (
        f"{where}: expected {expect}, got {response.status_code} "
        f"{response.get('Location', '')} {body[:300]!r}"
    )
    if expect.code is not None:
        assert response.get("Content-Type", "").startswith("application/json"), where
        payload = response.json()
        assert payload.get("code") == expect.code, f"{where}: {payload}"
        assert payload.get("detail"), f"{where}: an error needs a readable detail: {payload}"
    if expect.redirect is not None:
        location = urlsplit(response["Location"])
        assert location.path == expect.redirect, f"{where}: redirected to {response['Location']}"
        if expect.next:
            back = url if expect.next is True else expect.next
            assert parse_qs(location.query).get("next") == [back], (
                f"{where}: {response['Location']} should send back to {back}"
            )
    if expect.text is not None:
        assert expect.text in body, f"{where}: {expect.text!r} not in the page"
    if expect.then is not None:
        _check(client.get(response["Location"]), expect.then, response["Location"], client, where)


def _check_rule(rule: Rule, world: World, response: Response, expect: Expect, where: str) -> None:
    """What the rule says of every answer: no secret shown, the change made or not."""
    if rule.secret is not None:
        assert rule.secret(world) not in _text(response), f"{where}: shows {rule.secret(world)!r}"
    if rule.effect is not None:
        done = rule.effect(world)
        assert done == expect.effect, (
            f"{where}: the change was {'made' if done else 'not made'} "
            f"({response.status_code} {_text(response)[:200]!r})"
        )


def _check_others_untouched(world: World, response: Response, where: str) -> None:
    token: ApiToken = world.planted["token"]
    session: Session = world.planted["session"]
    body = _text(response)
    for secret in (token.prefix, str(session.id), session.url, world.target.email):
        assert secret not in body, f"{where}: shows the other user's {secret!r}"
    token.refresh_from_db()
    assert token.revoked_at is None, f"{where}: revoked the other user's token"
    session.refresh_from_db()
    assert session.state == Session.State.RUNNING, f"{where}: touched the other user's session"


def _cases() -> Iterator[Any]:
    for rule in ALL_RULES:
        for actor in ACTORS:
            case_id = " ".join(filter(None, (rule.route, rule.method, rule.case, actor)))
            bug = KNOWN_BUGS.get((rule.route, rule.method, actor))
            marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
            yield pytest.param(rule, actor, id=case_id, marks=marks)


@pytest.mark.django_db
@pytest.mark.parametrize(("rule", "actor"), list(_cases()))
def test_route_answers_actor_as_the_policy_says(
    request: pytest.FixtureRequest, rule: Rule, actor: str
) -> None:
    client = Client()
    world = _build_world(request, actor, client)
    url = rule.build_url(world)
    expect = rule.expect[actor]
    data = expect.data if expect.data is not None else rule.build_data(world)
    headers = rule.headers(world) if rule.headers is not None else {}
    where = f"{rule.method} {url} {rule.case} as {actor}"

    response = _send(client, rule.method, url, data, headers)

    _check(response, expect, url, client, where)
    _check_rule(rule, world, response, expect, where)
    if actor == OTHERS:
        _check_others_untouched(world, response, where)


def test_known_bugs_name_real_cells() -> None:
    cells = {(rule.route, rule.method, actor) for rule in ALL_RULES for actor in ACTORS}
    assert not set(KNOWN_BUGS) - cells, sorted(set(KNOWN_BUGS) - cells)
