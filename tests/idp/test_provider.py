"""The test identity provider itself: discovery, tokens and claims, the browser-style code
flow, ``prompt=none`` and RP-initiated logout, all over real HTTP against the subprocess."""

from __future__ import annotations

import secrets
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import pytest
import requests

from tests.idp import CONTROL_SECRET_HEADER
from tests.idp.provider import SCOPES, OidcProvider

pytestmark = pytest.mark.integration

RP = "http://rp.test"
CALLBACK = f"{RP}/oidc/callback/"
PASSWORD = "correct-horse-battery"
TIMEOUT = 10


@pytest.fixture
def provider(oidc_provider: OidcProvider) -> OidcProvider:
    oidc_provider.allow_relying_party(RP)
    return oidc_provider


def _username() -> str:
    # One provider serves the whole session: each test brings users of its own.
    return f"user-{secrets.token_hex(4)}"


def _verified_claims(provider: OidcProvider, id_token: str) -> dict[str, Any]:
    """The ID token's claims, only if its RS256 signature matches a key of the JWKS."""
    jwks = jwt.PyJWKSet.from_dict(requests.get(provider.jwks_endpoint, timeout=TIMEOUT).json())
    key = jwks[jwt.get_unverified_header(id_token)["kid"]]
    claims: dict[str, Any] = jwt.decode(
        id_token,
        key=key,
        algorithms=["RS256"],
        audience=provider.client_id,
        issuer=provider.issuer,
    )
    return claims


class _FormFields(HTMLParser):
    """The named inputs of a page's form, with values unescaped as a browser would."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "input" and attributes.get("name"):
            self.fields[attributes["name"] or ""] = attributes.get("value") or ""


def _form_fields(page: str) -> dict[str, str]:
    parser = _FormFields()
    parser.feed(page)
    return parser.fields


def _authorize_params(**extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "scope": SCOPES,
        "redirect_uri": CALLBACK,
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        **extra,
    }


def _follow_to_callback(browser: requests.Session, response: requests.Response) -> dict[str, str]:
    """Follow the provider's redirects, stop at the relying party's callback, return its
    query: the relying party itself is not running."""
    for _ in range(5):
        assert response.status_code == 302, response.text[:500]
        location = urljoin(response.url, response.headers["Location"])
        if location.startswith(CALLBACK):
            return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
        response = browser.get(location, allow_redirects=False, timeout=TIMEOUT)
    raise AssertionError("the provider never redirected to the callback")


def _sign_in(
    browser: requests.Session, provider: OidcProvider, username: str, params: dict[str, str]
) -> dict[str, str]:
    """Start an authorization request, sign in at the provider's form, return the callback
    query (``code`` and ``state``)."""
    login_page = browser.get(
        provider.authorization_endpoint,
        params={"client_id": provider.client_id, **params},
        timeout=TIMEOUT,
    )
    assert login_page.url.startswith(f"{provider.base_url}/accounts/login/")
    assert "Sign in" in login_page.text
    submitted = browser.post(
        login_page.url,
        data={**_form_fields(login_page.text), "username": username, "password": PASSWORD},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    return _follow_to_callback(browser, submitted)


def _exchange(provider: OidcProvider, code: str) -> dict[str, Any]:
    response = requests.post(
        provider.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def _prompt_none(browser: requests.Session, provider: OidcProvider) -> dict[str, str]:
    """What mozilla-django-oidc's SessionRefresh asks: a code only if already signed in."""
    response = browser.get(
        provider.authorization_endpoint,
        params={"client_id": provider.client_id, **_authorize_params(prompt="none")},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    return _follow_to_callback(browser, response)


def test_discovery_document_names_the_endpoints_of_the_handle(provider: OidcProvider) -> None:
    document = requests.get(
        f"{provider.base_url}/.well-known/openid-configuration", timeout=TIMEOUT
    ).json()

    assert document["issuer"] == provider.issuer == provider.base_url
    assert provider.base_url.startswith("http://127.0.0.1:")
    assert document["authorization_endpoint"] == provider.authorization_endpoint
    assert document["token_endpoint"] == provider.token_endpoint
    assert document["userinfo_endpoint"] == provider.userinfo_endpoint
    assert document["jwks_uri"] == provider.jwks_endpoint
    assert document["end_session_endpoint"] == provider.end_session_endpoint
    assert "code" in document["response_types_supported"]
    assert provider.portal_settings()["OIDC_OP_LOGOUT_ENDPOINT"] == provider.end_session_endpoint


def test_password_grant_for_an_mfa_user_signs_amr_mfa_and_groups_into_the_id_token(
    provider: OidcProvider,
) -> None:
    username = _username()
    provider.add_user(
        username,
        PASSWORD,
        email=f"{username}@example.org",
        first_name="Ada",
        last_name="Lovelace",
        groups=["staff", "physics"],
        mfa=True,
    )

    tokens = provider.password_grant(username, PASSWORD)

    claims = _verified_claims(provider, tokens["id_token"])
    assert claims["amr"] == ["pwd", "mfa"]
    assert claims["acr"] == "mfa"
    assert claims["groups"] == ["physics", "staff"]
    assert claims["preferred_username"] == username
    assert claims["email"] == f"{username}@example.org"
    assert (claims["given_name"], claims["family_name"]) == ("Ada", "Lovelace")
    assert claims["name"] == "Ada Lovelace"


def test_userinfo_answers_groups_and_amr_for_the_access_token(provider: OidcProvider) -> None:
    username = _username()
    provider.add_user(
        username, PASSWORD, email=f"{username}@example.org", groups=["staff"], mfa=True
    )
    tokens = provider.password_grant(username, PASSWORD)

    userinfo = provider.userinfo(tokens["access_token"])

    id_claims = _verified_claims(provider, tokens["id_token"])
    assert userinfo["sub"] == id_claims["sub"]
    assert userinfo["preferred_username"] == username
    assert userinfo["email"] == f"{username}@example.org"
    assert userinfo["groups"] == ["staff"]
    assert userinfo["amr"] == ["pwd", "mfa"]
    assert userinfo["acr"] == "mfa"


def test_a_user_without_second_factor_gets_pwd_only_and_no_hidden_group(
    provider: OidcProvider,
) -> None:
    username = _username()
    provider.add_user(username, PASSWORD)

    tokens = provider.password_grant(username, PASSWORD)

    claims = _verified_claims(provider, tokens["id_token"])
    userinfo = provider.userinfo(tokens["access_token"])
    assert claims["amr"] == userinfo["amr"] == ["pwd"]
    assert claims["acr"] == userinfo["acr"] == "pwd"
    assert claims["groups"] == userinfo["groups"] == []


def test_adding_a_user_again_replaces_password_groups_and_mfa(provider: OidcProvider) -> None:
    username = _username()
    provider.add_user(username, "first-password", groups=["staff"], mfa=True)

    provider.add_user(username, PASSWORD, groups=["students"], mfa=False)

    with pytest.raises(requests.HTTPError):
        provider.password_grant(username, "first-password")
    userinfo = provider.userinfo(provider.password_grant(username, PASSWORD)["access_token"])
    assert userinfo["groups"] == ["students"]
    assert userinfo["amr"] == ["pwd"]


def test_a_wrong_password_is_refused(provider: OidcProvider) -> None:
    username = _username()
    provider.add_user(username, PASSWORD)

    with pytest.raises(requests.HTTPError) as refused:
        provider.password_grant(username, "not-the-password")

    assert refused.value.response is not None
    assert refused.value.response.status_code == 403
    assert refused.value.response.json()["error"] == "access_denied"


def test_the_control_endpoint_refuses_requests_without_the_secret(
    provider: OidcProvider,
) -> None:
    payload = {"username": _username(), "password": PASSWORD}

    missing = requests.post(f"{provider.base_url}/_control/users/", json=payload, timeout=TIMEOUT)
    wrong = requests.post(
        f"{provider.base_url}/_control/users/",
        json=payload,
        headers={CONTROL_SECRET_HEADER: "guess"},
        timeout=TIMEOUT,
    )

    assert (missing.status_code, wrong.status_code) == (403, 403)
    with pytest.raises(requests.HTTPError):
        provider.password_grant(payload["username"], PASSWORD)


def test_authorization_code_round_trip_through_the_login_form(provider: OidcProvider) -> None:
    username = _username()
    provider.add_user(username, PASSWORD, groups=["staff"], mfa=True)
    params = _authorize_params()

    with requests.Session() as browser:
        callback = _sign_in(browser, provider, username, params)
    tokens = _exchange(provider, callback["code"])

    assert callback["state"] == params["state"]
    claims = _verified_claims(provider, tokens["id_token"])
    assert claims["nonce"] == params["nonce"]
    assert claims["preferred_username"] == username
    assert claims["amr"] == ["pwd", "mfa"]
    assert provider.userinfo(tokens["access_token"])["groups"] == ["staff"]


def test_prompt_none_gives_a_code_only_to_a_signed_in_browser(provider: OidcProvider) -> None:
    username = _username()
    provider.add_user(username, PASSWORD)

    with requests.Session() as browser:
        before = _prompt_none(browser, provider)
        _sign_in(browser, provider, username, _authorize_params())
        after = _prompt_none(browser, provider)

    assert before.get("error") == "login_required"
    assert "code" not in before
    claims = _verified_claims(provider, _exchange(provider, after["code"])["id_token"])
    assert claims["preferred_username"] == username


def test_end_session_redirects_to_the_relying_party_and_ends_the_provider_session(
    provider: OidcProvider,
) -> None:
    username = _username()
    provider.add_user(username, PASSWORD)

    with requests.Session() as browser:
        callback = _sign_in(browser, provider, username, _authorize_params())
        id_token = _exchange(provider, callback["code"])["id_token"]
        logout = browser.get(
            provider.end_session_endpoint,
            params={"id_token_hint": id_token, "post_logout_redirect_uri": f"{RP}/logged-out/"},
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        afterwards = _prompt_none(browser, provider)

    assert logout.status_code == 302
    assert logout.headers["Location"] == f"{RP}/logged-out/"
    assert afterwards.get("error") == "login_required"


def test_end_session_never_redirects_to_an_unregistered_uri(provider: OidcProvider) -> None:
    username = _username()
    provider.add_user(username, PASSWORD)

    with requests.Session() as browser:
        callback = _sign_in(browser, provider, username, _authorize_params())
        id_token = _exchange(provider, callback["code"])["id_token"]
        logout = browser.get(
            provider.end_session_endpoint,
            params={"id_token_hint": id_token, "post_logout_redirect_uri": "http://evil.test/"},
            timeout=TIMEOUT,
        )
        still_signed_in = _prompt_none(browser, provider)

    # The library's answer is its own confirmation page, and the session survives until a
    # person confirms there.
    assert logout.url.startswith(f"{provider.base_url}/end-session-prompt")
    assert "evil.test" not in logout.url
    assert "code" in still_signed_in
