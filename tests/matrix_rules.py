"""The authorization matrix's policy table: for every route, what each kind of caller gets.

Read it as documentation of the access policy (service rules 1, 2 and 11, and the REST API's
"every endpoint applies the same policy as the web pages"). ``tests/test_authorization_matrix
.py`` walks the URL configuration, fails if a route has no rule here, and requests every rule
as every actor.

The columns (actors), each a signed-in user unless said otherwise:

========================  ===================================================================
``anonymous``             nobody signed in
``unverified``            the staff member, signed in *without* the second factor: the most
                          privileged user, so that only the second factor stands in the way
``outsider``              passed the second factor, but outside the access policy (not the
                          operator's staff)
``terms``                 an admitted user (not staff) who passed the second factor; the
                          current terms are published and they have not accepted them
``suspended``             the staff member, passed the second factor, with a suspension in
                          force (imposed by another staff member): again the most privileged
                          user, so that only the suspension stands in the way
``others``                the admitted user (terms accepted, second factor passed) acting on
                          objects of another user: URLs name the other user's token or
                          suspension; routes without an object id must neither show nor touch
                          the other user's token and running session, which exist
``staff``                 the staff member (``is_staff``, superuser), second factor passed,
                          terms accepted
``staff_view``            a staff member (``is_staff``, not superuser) holding only the view
                          permission of every model: reads the admin, changes nothing
``staff_change_session``  a staff member holding only ``sessions_app.change_session``
``staff_change_user``     a staff member holding only ``auth.change_user``
``staff_add_suspension``  a staff member holding only ``suspension_app.add_suspension``
========================  ===================================================================

Every signed-in actor has a confirmed authenticator app (TOTP device), as real users do; the
staff roles have accepted the terms and passed the second factor.

On the portal's own pages and the users' API the staff roles get what the superuser gets (they
are users there: ``_USER_RULES``); in the admin, the staff API and ``/metrics`` their Django
permissions decide, and every rule says what each role gets (``_STAFF_RULES``, and the admin's
actions and forms in ``tests/matrix_staff.py``, which also check that the change was made or
not).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from accounts_app.policy import NOT_OPEN_MESSAGE
from portal.models import ApiToken
from portal.tokens import token_issue
from sessions_app.models import Environment, Session
from suspension_app.models import Suspension
from suspension_app.services import suspension_impose
from tests.sessions_app.pinned import pinned_state

ANON = "anonymous"
UNVERIFIED = "unverified"
OUTSIDER = "outsider"
TERMS = "terms"
SUSPENDED = "suspended"
OTHERS = "others"
STAFF = "staff"
STAFF_VIEW = "staff_view"
STAFF_CHANGE_SESSION = "staff_change_session"
STAFF_CHANGE_USER = "staff_change_user"
STAFF_ADD_SUSPENSION = "staff_add_suspension"
STAFF_ROLES = (STAFF_VIEW, STAFF_CHANGE_SESSION, STAFF_CHANGE_USER, STAFF_ADD_SUSPENSION)
ACTORS = (ANON, UNVERIFIED, OUTSIDER, TERMS, SUSPENDED, OTHERS, STAFF, *STAFF_ROLES)

# What each staff role holds; ``staff_view`` holds every model's view permission instead.
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    STAFF_VIEW: (),
    STAFF_CHANGE_SESSION: ("sessions_app.change_session",),
    STAFF_CHANGE_USER: ("auth.change_user",),
    STAFF_ADD_SUSPENSION: ("suspension_app.add_suspension",),
}


def role_holds(role: str, permission: str) -> bool:
    """Whether the staff role holds ``permission`` (``app_label.codename``)."""
    app_label, _, codename = permission.partition(".")
    if role == STAFF_VIEW:
        # Every model's own view permission, none of the extra ones (view_metrics).
        return codename.startswith("view_") and codename != "view_metrics"
    return permission in ROLE_PERMISSIONS[role]


SUSPENSION_REASON = "Matrix test: scratch cleanup circumvented."
STAFF_ONLY_MESSAGE = "The administration pages are for the operator's staff."


# --- What a request should answer -------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """The expected answer: a status, and optionally the API error ``code``, the redirect
    target (``redirect`` path; ``next``: it carries ``?next=<the page asked for>``, or this
    exact ``next`` if a string), a text
    the page shows, and a redirect to follow once (``then``). ``data`` replaces the rule's
    request body for this actor only."""

    status: int
    code: str | None = None
    redirect: str | None = None
    next: bool | str = False
    text: str | None = None
    then: Expect | None = None
    data: Mapping[str, Any] | None = None
    effect: bool = False  # for rules with an ``effect``: whether the change was made

    def __str__(self) -> str:
        parts = [str(self.status)]
        if self.code:
            parts.append(self.code)
        if self.redirect:
            parts.append(f"→ {self.redirect}" + ("?next=…" if self.next else ""))
        if self.then:
            parts.append(f"then {self.then}")
        if self.effect:
            parts.append("and done")
        return " ".join(parts)


OK = Expect(200)
NO_CONTENT = Expect(204)
FORBIDDEN = Expect(403)

# Pages: the access middleware (accounts_app.middleware) answers before the view.
PAGE_LOGIN = Expect(302, redirect="/login/", next=True)
PAGE_SECOND_FACTOR = Expect(302, redirect="/account/second-factor/", next=True)
PAGE_NOT_OPEN = Expect(403, text=NOT_OPEN_MESSAGE)
PAGE_SUSPENDED = Expect(403, text=SUSPENSION_REASON)
PAGE_GUARD = {
    ANON: PAGE_LOGIN,
    UNVERIFIED: PAGE_SECOND_FACTOR,
    OUTSIDER: PAGE_NOT_OPEN,
    SUSPENDED: PAGE_SUSPENDED,
}

# The API: its permission classes (accounts_app.permissions.PortalAccess) answer in JSON.
API_UNAUTHENTICATED = Expect(401, code="not_authenticated")
API_SECOND_FACTOR = Expect(403, code="second_factor_required")
API_NOT_OPEN = Expect(403, code="access_denied")
API_SUSPENDED = Expect(403, code="suspended")
API_GUARD = {
    ANON: API_UNAUTHENTICATED,
    UNVERIFIED: API_SECOND_FACTOR,
    OUTSIDER: API_NOT_OPEN,
    SUSPENDED: API_SUSPENDED,
}

# The admin: the middleware first, then the admin site's own check (staff only), which sends
# non-staff to its login view, which shows them the refusal.
ADMIN_STAFF_ONLY_PAGE = Expect(403, text=STAFF_ONLY_MESSAGE)
ADMIN_STAFF_ONLY = Expect(302, redirect="/admin/login/", next=True, then=ADMIN_STAFF_ONLY_PAGE)
ADMIN = {**PAGE_GUARD, TERMS: ADMIN_STAFF_ONLY, OTHERS: ADMIN_STAFF_ONLY, STAFF: OK}
# The staff API (/api/v1/admin/...): the API's guard, and staff only.
API_STAFF_ONLY = Expect(403, code="permission_denied")
API_ADMIN_GUARD = {**API_GUARD, TERMS: API_STAFF_ONLY, OTHERS: API_STAFF_ONLY}


def by_permission(
    allowed: Expect, *permissions: str, refused: Expect = FORBIDDEN
) -> dict[str, Expect]:
    """Each staff role's answer: ``allowed`` for a role holding any of ``permissions``."""
    return {
        role: allowed if any(role_holds(role, p) for p in permissions) else refused
        for role in STAFF_ROLES
    }


# The second factor's own pages and sign-out: signed in is enough (``signed_in_view``).
SIGNED_IN_ONLY = {ANON: PAGE_LOGIN}
SECOND_FACTOR_FORM = Expect(302, redirect="/account/second-factor/", next="/")
# Sign-in and the provider's round trip: anyone (``public_view``).


# --- The objects that URLs name ---------------------------------------------------------------


@dataclass
class World:
    """The rows one case needs, made on first use.

    ``target`` owns the objects that URLs name: the other user for ``others``, the actor
    themself otherwise (the owner for ``anonymous``). ``bystander`` is a third user whose
    suspension staff routes point at.
    """

    actor: str
    user: User | None
    target: User
    bystander: User
    staff: User
    environment: Environment
    planted: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def token(self) -> ApiToken:
        """A live API token of ``target``."""
        raw = token_issue(user=self.target, name="matrix")
        return ApiToken.objects.get(prefix=raw[:12])

    @cached_property
    def bystander_token(self) -> ApiToken:
        """A live API token of the bystander: what a staff member's action may revoke."""
        raw = token_issue(user=self.bystander, name="matrix")
        return ApiToken.objects.get(prefix=raw[:12])

    @cached_property
    def actor_token(self) -> str:
        """A new API token of the actor, as the secret a client sends."""
        assert self.user is not None
        return token_issue(user=self.user, name="matrix")

    @cached_property
    def superuser_peer(self) -> User:
        """A superuser other than the actor."""
        return User.objects.create_user(
            "root-matrix", email="root@example.org", is_staff=True, is_superuser=True
        )

    @cached_property
    def suspension(self) -> Suspension:
        """A suspension in force, of the bystander."""
        return suspension_impose(user=self.bystander, reason="Bystander.", imposed_by=self.staff)

    def running_session(self, user: User) -> Session:
        now = timezone.now()
        return Session.objects.create(
            user=user,
            environment=self.environment,
            state=Session.State.RUNNING,
            created_at=now,
            started_at=now,
            expires_at=now + self.environment.max_duration,
            url="http://127.0.0.1:1/user/matrix/lab",
            # What the local back-end keeps for a server: the forward-auth hands it on.
            spawner_state=pinned_state("matrix-token"),
        )


def _target_session_url(world: World) -> str:
    session = world.planted.get("session") or world.running_session(world.target)
    return reverse("session-route-auth", args=[session.pk])


# --- The rules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One request (``method`` on the route's URL, with ``data`` as its body: a form for pages,
    JSON for the API) and what each actor gets."""

    route: str
    method: str
    expect: Mapping[str, Expect]
    url: Callable[[World], str] | None = None  # default: reverse(route)
    data: Mapping[str, Any] | None = None
    # A body made from the world's rows (after ``url``); ``data`` of an Expect still wins.
    form: Callable[[World], Mapping[str, Any]] | None = None
    # Request headers made from the world (e.g. the actor's token).
    headers: Callable[[World], Mapping[str, str]] | None = None
    # Whether the request changed what it asks to change, read back after it.
    effect: Callable[[World], bool] | None = None
    # What the answer must never contain, whoever asks (a token, a server's credential).
    secret: Callable[[World], str] | None = None
    # Tells apart rules of the same route and method in the test's ids.
    case: str = ""

    def build_url(self, world: World) -> str:
        return self.url(world) if self.url is not None else reverse(self.route)

    def build_data(self, world: World) -> Mapping[str, Any] | None:
        return self.form(world) if self.form is not None else self.data

    def with_roles_as_staff(self) -> Rule:
        """The rule, each staff role getting what the superuser staff member gets."""
        return replace(
            self, expect={**self.expect, **dict.fromkeys(STAFF_ROLES, self.expect[STAFF])}
        )


def _admin_change(route: str, obj: Callable[[World], Any]) -> Callable[[World], str]:
    return lambda w: reverse(route, args=[obj(w).pk])


def _queued_session(route: str) -> Callable[[World], str]:
    """The route for a session waiting in the queue, of a user of its own: the actors' own
    sessions are not the point (and the bystander already runs one for ``others``)."""

    def build(world: World) -> str:
        user = User.objects.create_user("queued-matrix")
        session = Session.objects.create(
            user=user,
            environment=world.environment,
            state=Session.State.QUEUED,
            created_at=timezone.now(),
        )
        return reverse(route, args=[session.pk])

    return build


def _target_session_detail(world: World) -> str:
    session = world.planted.get("session") or world.running_session(world.target)
    return reverse("api-session-detail", args=[session.pk])


def _target_session_history(world: World) -> str:
    session = world.planted.get("session") or world.running_session(world.target)
    return reverse("session-history-detail", args=[session.pk])


def _with_a_running_session(route: str) -> Callable[[World], str]:
    """The route, with a running session of the bystander among everyone's (its server's token,
    ``matrix-token``, must not show)."""

    def build(world: World) -> str:
        if "session" not in world.planted:  # ``others``: the bystander runs one already
            world.running_session(world.bystander)
        return reverse(route)

    return build


TOO_LONG_NAME = {"name": "x" * 101}  # an invalid body: refused by the form, nothing written
LAUNCH = {"environment": "ecmwf-dss"}
# Launching for real is not this test's business (no worker runs): callers allowed to launch
# ask for an environment that doesn't exist, which the launch service itself refuses.
LAUNCH_NOWHERE = {"environment": "no-such-environment"}

_USER_RULES: list[Rule] = [
    # --- Probes: anyone (the orchestrator), and they say nothing about anyone ------------------
    Rule("healthz", "GET", {a: OK for a in ACTORS}),
    Rule("readyz", "GET", {a: OK for a in ACTORS}),
    # --- Sign-in, sign-out, the identity provider's round trip: public -------------------------
    Rule("login", "GET", {a: OK for a in ACTORS}),
    Rule("login-failed", "GET", {a: Expect(401) for a in ACTORS}),
    Rule("logout", "GET", {ANON: Expect(302, redirect="/login/"), **{a: OK for a in ACTORS[1:]}}),
    Rule(
        "oidc_logout",
        "GET",
        {ANON: Expect(302, redirect="/login/"), **{a: OK for a in ACTORS[1:]}},
    ),
    # With OIDC off (the embedded default, as here) there is no provider to send anyone to.
    Rule("oidc_authentication_init", "GET", {a: Expect(404) for a in ACTORS}),
    Rule(
        "oidc_authentication_callback",
        "GET",
        {a: Expect(302, redirect="/login/failed/") for a in ACTORS},
    ),
    # --- The second factor's own pages: signed in is enough ------------------------------------
    Rule(
        "second-factor",
        "GET",
        {
            **SIGNED_IN_ONLY,
            UNVERIFIED: OK,  # the code form
            # Already passed: on to ``next`` (the launcher).
            **{a: Expect(302, redirect="/") for a in (OUTSIDER, TERMS, SUSPENDED, OTHERS, STAFF)},
        },
    ),
    Rule(
        "second-factor-setup",
        "GET",
        # Replacing a working authenticator takes a backup code (the reset form), never a bare
        # sign-in: everyone here has one, so the set-up page sends them to the code form.
        {**SIGNED_IN_ONLY, **{a: SECOND_FACTOR_FORM for a in ACTORS[1:]}},
    ),
    Rule(
        "second-factor-reset",
        "POST",
        {**SIGNED_IN_ONLY, **{a: Expect(400) for a in ACTORS[1:]}},
        data={"code": ""},
    ),
    # --- The account page and its forms: the full policy ----------------------------------------
    Rule("account", "GET", {**PAGE_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    Rule(
        "token-create",
        "POST",
        {**PAGE_GUARD, TERMS: Expect(400), OTHERS: Expect(400), STAFF: Expect(400)},
        data=TOO_LONG_NAME,
    ),
    Rule(
        "token-revoke",
        "POST",
        {
            **PAGE_GUARD,
            TERMS: Expect(302, redirect="/account/"),
            OTHERS: Expect(404, text="No such token."),
            STAFF: Expect(302, redirect="/account/"),
        },
        url=lambda w: reverse("token-revoke", args=[w.token.pk]),
    ),
    Rule("backup-codes-new", "POST", {**PAGE_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    # --- Sessions and terms pages ---------------------------------------------------------------
    Rule("launcher", "GET", {**PAGE_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    Rule(
        "launcher",
        "POST",
        {
            **PAGE_GUARD,
            # Reading is fine, launching is not: the form asks for the terms first.
            TERMS: Expect(400, text="Please read the terms of use and tick"),
            # Another user's running session is not a reason to go to /session/.
            OTHERS: Expect(400, text="There is no environment", data=LAUNCH_NOWHERE),
            STAFF: Expect(400, text="There is no environment", data=LAUNCH_NOWHERE),
        },
        data=LAUNCH,
    ),
    Rule("session", "GET", {**PAGE_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    Rule(
        "session-status",
        "GET",
        {
            **PAGE_GUARD,
            TERMS: Expect(404, code="no_session"),
            OTHERS: Expect(404, code="no_session"),
            STAFF: Expect(404, code="no_session"),
        },
    ),
    Rule(
        "session-events",
        "GET",
        {
            **PAGE_GUARD,
            # Nobody of these has a session of their own: the stream says so and ends.
            TERMS: Expect(200, text="no_session"),
            OTHERS: Expect(200, text="no_session"),
            STAFF: Expect(200, text="no_session"),
        },
    ),
    Rule(
        "session-stop",
        "POST",
        {
            **PAGE_GUARD,
            **{a: Expect(302, redirect="/session/") for a in (TERMS, OTHERS, STAFF)},
        },
    ),
    # The ingress controller's question before each request into a session (forward-auth):
    # status codes, never a redirect; only the owner passes. New terms don't lock anyone out of
    # the session they run.
    Rule(
        "session-route-auth",
        "GET",
        {
            ANON: Expect(401),
            UNVERIFIED: Expect(401),
            OUTSIDER: Expect(403, text=NOT_OPEN_MESSAGE),
            SUSPENDED: Expect(403, text=SUSPENSION_REASON),
            TERMS: OK,
            OTHERS: Expect(403, text="This is not your session"),
            STAFF: OK,
        },
        url=_target_session_url,
    ),
    # The local router's question (nginx's auth_request), which names the route in
    # X-Original-URI: without it nobody passes, and the caller checks come first. The routes
    # themselves: tests/sessions_app/test_route_auth.py and tests/portal/test_router.py.
    Rule(
        "route-auth",
        "GET",
        {
            ANON: Expect(401),
            UNVERIFIED: Expect(401),
            OUTSIDER: Expect(403, text=NOT_OPEN_MESSAGE),
            SUSPENDED: Expect(403, text=SUSPENSION_REASON),
            TERMS: Expect(403, text="This is not your session"),
            OTHERS: Expect(403, text="This is not your session"),
            STAFF: Expect(403, text="This is not your session"),
        },
    ),
    Rule(
        "route-refusal",
        "GET",
        {
            ANON: Expect(401),
            UNVERIFIED: Expect(401),
            OUTSIDER: Expect(403, text=NOT_OPEN_MESSAGE),
            SUSPENDED: Expect(403, text=SUSPENSION_REASON),
            TERMS: Expect(403, text="This is not your session"),
            OTHERS: Expect(403, text="This is not your session"),
            STAFF: Expect(403, text="This is not your session"),
        },
    ),
    Rule("terms", "GET", {**PAGE_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    # Storage: one's own usage and cleanup history (reading needs no terms acceptance).
    Rule("storage", "GET", {**PAGE_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    # One's own sessions and CPU-hours per day (reading needs no terms acceptance).
    Rule("usage", "GET", {**PAGE_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    # One's own past sessions (reading needs no terms acceptance); another user's is a 404 like
    # an unknown one.
    Rule("session-history", "GET", {**PAGE_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    Rule(
        "session-history-detail",
        "GET",
        {**PAGE_GUARD, TERMS: OK, OTHERS: Expect(404), STAFF: OK},
        url=_target_session_history,
    ),
    # --- REST API v1 ----------------------------------------------------------------------------
    # "Every endpoint applies the same policy as the web pages", the OpenAPI document included.
    Rule("api-schema", "GET", {**API_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    Rule("api-environments", "GET", {**API_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    Rule("api-terms-current", "GET", {**API_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    Rule(
        "api-terms-accept",
        "POST",
        {**API_GUARD, **{a: Expect(400, code="invalid") for a in (TERMS, OTHERS, STAFF)}},
        data={},
    ),
    Rule(
        "api-session",
        "GET",
        {**API_GUARD, **{a: Expect(404, code="no_active_session") for a in (TERMS, OTHERS, STAFF)}},
    ),
    Rule(
        "api-session",
        "POST",
        {
            **API_GUARD,
            TERMS: Expect(403, code="terms_not_accepted"),
            OTHERS: Expect(400, code="unknown_environment", data=LAUNCH_NOWHERE),
            STAFF: Expect(400, code="unknown_environment", data=LAUNCH_NOWHERE),
        },
        data=LAUNCH,
    ),
    Rule(
        "api-session",
        "DELETE",
        {**API_GUARD, **{a: Expect(404, code="no_active_session") for a in (TERMS, OTHERS, STAFF)}},
    ),
    Rule("api-sessions", "GET", {**API_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    # One of one's own sessions; another user's is a 404 like an unknown one.
    Rule(
        "api-session-detail",
        "GET",
        {**API_GUARD, TERMS: OK, OTHERS: Expect(404, code="session_not_found"), STAFF: OK},
        url=_target_session_detail,
    ),
    Rule("api-storage", "GET", {**API_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    Rule("api-storage-removals", "GET", {**API_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    Rule("api-tokens", "GET", {**API_GUARD, TERMS: OK, OTHERS: OK, STAFF: OK}),
    Rule(
        "api-tokens",
        "POST",
        {**API_GUARD, **{a: Expect(400, code="invalid") for a in (TERMS, OTHERS, STAFF)}},
        data=TOO_LONG_NAME,
    ),
    Rule(
        "api-token",
        "DELETE",
        {**API_GUARD, TERMS: NO_CONTENT, OTHERS: Expect(404, code="not_found"), STAFF: NO_CONTENT},
        url=lambda w: reverse("api-token", args=[w.token.pk]),
    ),
]

# Each staff role's answer in the staff API: its permission classes answer in JSON.
API_ROLE_REFUSED = API_STAFF_ONLY
VIEW_SESSION = ("sessions_app.view_session", "sessions_app.change_session")
CHANGE_SESSION = "sessions_app.change_session"
QUEUE_PAGE = Expect(302, redirect="/admin/sessions_app/session/queue/")

_STAFF_RULES: list[Rule] = [
    # Metrics: each actor presents a portal token of their own (a browser session counts for
    # nothing, and no address is allowed by default: tests/portal/test_metrics.py). Staff with
    # ``view_metrics`` only; never a redirect.
    Rule(
        "metrics",
        "GET",
        {
            ANON: Expect(401),
            UNVERIFIED: OK,  # a token is its own credential: the second factor made it
            OUTSIDER: FORBIDDEN,
            TERMS: FORBIDDEN,
            SUSPENDED: Expect(403, text=SUSPENSION_REASON),
            OTHERS: FORBIDDEN,
            STAFF: OK,
            **by_permission(OK, "sessions_app.view_metrics"),
        },
        headers=lambda w: {} if w.user is None else {"authorization": f"Bearer {w.actor_token}"},
    ),
    # --- The staff API: the API's guard, then staff with the model permission ------------------
    Rule(
        "api-admin-suspensions",
        "GET",
        {
            **API_ADMIN_GUARD,
            STAFF: OK,
            **by_permission(OK, "suspension_app.view_suspension", refused=API_ROLE_REFUSED),
        },
    ),
    Rule(
        "api-admin-suspensions",
        "POST",
        {
            **API_ADMIN_GUARD,
            STAFF: Expect(400, code="invalid"),
            **by_permission(
                Expect(400, code="invalid"),
                "suspension_app.add_suspension",
                refused=API_ROLE_REFUSED,
            ),
        },
        data={},
    ),
    Rule(
        "api-admin-suspension-lift",
        "POST",
        {
            **API_ADMIN_GUARD,
            STAFF: Expect(400, code="invalid"),
            **by_permission(
                Expect(400, code="invalid"),
                "suspension_app.lift_suspension",
                refused=API_ROLE_REFUSED,
            ),
        },
        url=lambda w: reverse("api-admin-suspension-lift", args=[w.suspension.pk]),
        data={},
    ),
    Rule(
        "api-admin-suspension",
        "GET",
        {
            **API_ADMIN_GUARD,
            STAFF: OK,
            **by_permission(OK, "suspension_app.view_suspension", refused=API_ROLE_REFUSED),
        },
        url=lambda w: reverse("api-admin-suspension", args=[w.suspension.pk]),
    ),
    # Sessions: staff list everyone's (never a server's token) and stop one; usage as JSON.
    Rule(
        "api-admin-sessions",
        "GET",
        {
            **API_ADMIN_GUARD,
            STAFF: OK,
            **by_permission(OK, *VIEW_SESSION, refused=API_ROLE_REFUSED),
        },
        url=_with_a_running_session("api-admin-sessions"),
        secret=lambda w: "matrix-token",
    ),
    Rule(
        "api-admin-session-stop",
        "POST",
        {
            **API_ADMIN_GUARD,
            STAFF: Expect(202, effect=True),
            **by_permission(Expect(202, effect=True), CHANGE_SESSION, refused=API_ROLE_REFUSED),
        },
        url=_queued_session("api-admin-session-stop"),
        effect=lambda w: Session.objects.filter(
            user__username="queued-matrix", reason=Session.Reason.STAFF_STOPPED
        ).exists(),
    ),
    Rule(
        "api-admin-usage",
        "GET",
        {
            **API_ADMIN_GUARD,
            STAFF: OK,
            **by_permission(OK, *VIEW_SESSION, refused=API_ROLE_REFUSED),
        },
    ),
    # Users, with their suspension and usage: the user permissions, as the admin's list.
    Rule(
        "api-admin-users",
        "GET",
        {
            **API_ADMIN_GUARD,
            STAFF: OK,
            **by_permission(OK, "auth.view_user", "auth.change_user", refused=API_ROLE_REFUSED),
        },
    ),
    # The queue: staff watch it, move a waiting session and remove it.
    Rule(
        "api-admin-queue",
        "GET",
        {
            **API_ADMIN_GUARD,
            STAFF: OK,
            **by_permission(OK, *VIEW_SESSION, refused=API_ROLE_REFUSED),
        },
    ),
    Rule(
        "api-admin-queue-move",
        "POST",
        {
            **API_ADMIN_GUARD,
            STAFF: OK,
            **by_permission(OK, CHANGE_SESSION, refused=API_ROLE_REFUSED),
        },
        url=_queued_session("api-admin-queue-move"),
        data={"steps": 1},
    ),
    Rule(
        "api-admin-queue-entry",
        "DELETE",
        {
            **API_ADMIN_GUARD,
            STAFF: NO_CONTENT,
            **by_permission(NO_CONTENT, CHANGE_SESSION, refused=API_ROLE_REFUSED),
        },
        url=_queued_session("api-admin-queue-entry"),
    ),
    # --- The admin: these are requested; every other admin route follows ADMIN_PATTERN ---------
    # Every staff member gets in; the index lists what their permissions show.
    Rule("admin:index", "GET", {**ADMIN, **dict.fromkeys(STAFF_ROLES, OK)}),
    Rule(
        "admin:login",
        "GET",
        {
            **ADMIN,
            TERMS: ADMIN_STAFF_ONLY_PAGE,
            OTHERS: ADMIN_STAFF_ONLY_PAGE,
            # Staff who are already in are taken to the index, as Django's admin does.
            **dict.fromkeys((STAFF, *STAFF_ROLES), Expect(302, redirect="/admin/")),
        },
    ),
    Rule(
        "admin:auth_user_change",
        "GET",
        {**ADMIN, **by_permission(OK, "auth.view_user", "auth.change_user")},
        url=_admin_change("admin:auth_user_change", lambda w: w.target),
    ),
    Rule(
        "admin:portal_apitoken_change",
        "GET",
        {**ADMIN, **by_permission(OK, "portal.view_apitoken", "portal.change_apitoken")},
        url=_admin_change("admin:portal_apitoken_change", lambda w: w.token),
    ),
    Rule(
        "admin:suspension_app_suspension_change",
        "GET",
        {**ADMIN, **by_permission(OK, "suspension_app.view_suspension")},
        url=_admin_change("admin:suspension_app_suspension_change", lambda w: w.suspension),
    ),
    Rule(
        "admin:suspension_app_suspension_reinstate",
        "GET",
        {**ADMIN, **by_permission(OK, "suspension_app.lift_suspension")},
        url=_admin_change("admin:suspension_app_suspension_reinstate", lambda w: w.suspension),
    ),
    Rule("admin:sessions_app_session_queue", "GET", {**ADMIN, **by_permission(OK, *VIEW_SESSION)}),
    Rule("admin:sessions_app_session_usage", "GET", {**ADMIN, **by_permission(OK, *VIEW_SESSION)}),
    Rule(
        "admin:sessions_app_session_queue_move",
        "POST",
        {**ADMIN, STAFF: QUEUE_PAGE, **by_permission(QUEUE_PAGE, CHANGE_SESSION)},
        url=_queued_session("admin:sessions_app_session_queue_move"),
        data={"steps": "1"},
    ),
    Rule(
        "admin:sessions_app_session_queue_remove",
        "GET",
        {**ADMIN, **by_permission(OK, CHANGE_SESSION)},
        url=_queued_session("admin:sessions_app_session_queue_remove"),
    ),
    Rule(
        "admin:sessions_app_session_queue_remove",
        "POST",
        {**ADMIN, STAFF: QUEUE_PAGE, **by_permission(QUEUE_PAGE, CHANGE_SESSION)},
        url=_queued_session("admin:sessions_app_session_queue_remove"),
    ),
]

RULES: list[Rule] = [*(rule.with_roles_as_staff() for rule in _USER_RULES), *_STAFF_RULES]

# Every other admin route (add, delete, history, password change, the catch-all, …) is covered
# by this pattern: the same guard (middleware, then ``PortalAdminSite.has_permission``) answers
# all of them. Their names (or, unnamed, their paths) start with these prefixes. Every model's
# changelist is requested as well (see ``admin_changelist_rules``).
ADMIN_PATTERN = ("admin:", "admin/")
ADMIN_PATTERN_EXPECT = ADMIN

# Routes from other people's code that are not this project's pages. Empty: the URL
# configuration has none (static files are served by WhiteNoise's middleware, not a route;
# ``django.contrib.staticfiles`` adds a route only with DEBUG on and ``runserver``).
EXCLUDED: dict[str, str] = {}

# Cells where the application does not (yet) follow the policy above: the test expects them to
# fail (strict xfail), so a fix shows up as an unexpected pass; then delete the entry. Key:
# (route, method, actor).
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}
