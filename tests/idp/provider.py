"""The test identity provider as a running process, a Python handle to it, and the fixture.

``oidc_provider`` (session scope) prepares a fresh SQLite database and signing key in a
temporary directory, starts django-oidc-provider under ``runserver`` on a free port of
127.0.0.1, registers one confidential client with a random id and secret, and stops the
process when the test session ends. Tests then create users and allow relying parties
through the handle; everything else goes through the provider's real OpenID Connect
endpoints.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.idp import CONTROL_SECRET_HEADER

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCOPES = "openid email profile groups"
HTTP_TIMEOUT = 10.0
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# A free port found by binding port 0 can be taken by someone else before runserver binds
# it; a few fresh tries make that race harmless.
START_ATTEMPTS = 3


class ProviderStartError(RuntimeError):
    """The provider process could not be prepared or did not come up."""


class _PortTaken(Exception):
    pass


def _raise_for_status(response: requests.Response) -> None:
    """Like ``raise_for_status``, with the provider's answer in the message."""
    if not response.ok:
        raise requests.HTTPError(
            f"{response.request.method} {response.url} answered {response.status_code}: "
            f"{response.text[:500]}",
            response=response,
        )


@dataclass
class OidcProvider:
    """A handle to the running provider: its endpoints, its one client, and test set-up."""

    base_url: str
    issuer: str
    client_id: str
    client_secret: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_endpoint: str
    end_session_endpoint: str
    introspection_endpoint: str
    control_secret: str = field(repr=False)
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)

    @classmethod
    def discover(
        cls, base_url: str, *, client_id: str, client_secret: str, control_secret: str
    ) -> OidcProvider:
        """Build the handle from the discovery document, as a relying party would."""
        response = requests.get(
            f"{base_url}/.well-known/openid-configuration", timeout=HTTP_TIMEOUT
        )
        _raise_for_status(response)
        document = response.json()
        return cls(
            base_url=base_url,
            issuer=document["issuer"],
            client_id=client_id,
            client_secret=client_secret,
            authorization_endpoint=document["authorization_endpoint"],
            token_endpoint=document["token_endpoint"],
            userinfo_endpoint=document["userinfo_endpoint"],
            jwks_endpoint=document["jwks_uri"],
            end_session_endpoint=document["end_session_endpoint"],
            introspection_endpoint=document["introspection_endpoint"],
            control_secret=control_secret,
        )

    def _control(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(
            f"{self.base_url}{path}",
            json=payload,
            headers={CONTROL_SECRET_HEADER: self.control_secret},
            timeout=HTTP_TIMEOUT,
        )
        _raise_for_status(response)
        result: dict[str, Any] = response.json()
        return result

    def register_client(self) -> None:
        """Create the client, or write its current redirect URIs to the provider."""
        self._control(
            "/_control/client/",
            {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "redirect_uris": self.redirect_uris,
                "post_logout_redirect_uris": self.post_logout_redirect_uris,
            },
        )

    def add_other_client(self, client_id: str, client_secret: str) -> None:
        """Register another application of this provider (no redirect URIs: it only uses
        the password grant), whose access tokens are not meant for the portal."""
        self._control(
            "/_control/client/",
            {
                "client_id": client_id,
                "client_secret": client_secret,
                "redirect_uris": [],
                "post_logout_redirect_uris": [],
            },
        )

    def add_user(
        self,
        username: str,
        password: str,
        *,
        email: str = "",
        first_name: str = "",
        last_name: str = "",
        groups: Sequence[str] = (),
        mfa: bool = False,
    ) -> None:
        """Create the user at the provider, or overwrite every field of an existing one."""
        self._control(
            "/_control/users/",
            {
                "username": username,
                "password": password,
                "email": email,
                "first_name": first_name,
                "last_name": last_name,
                "groups": list(groups),
                "mfa": mfa,
            },
        )

    def allow_relying_party(self, base_url: str) -> None:
        """Let the portal at ``base_url`` use the client: its callback and logout pages.

        URIs add up rather than replace, because one session-scoped provider serves tests
        with different portal addresses (a live server, Django's ``testserver``). The newest
        come first: the provider's end-session endpoint falls back to the first
        post-logout URI when a request names none.
        """
        base = base_url.rstrip("/")
        self.redirect_uris = _prepend_new([f"{base}/oidc/callback/"], self.redirect_uris)
        self.post_logout_redirect_uris = _prepend_new(
            [f"{base}/", f"{base}/login/", f"{base}/logged-out/"], self.post_logout_redirect_uris
        )
        self.register_client()

    def password_grant(
        self,
        username: str,
        password: str,
        scope: str = SCOPES,
        client: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Tokens for a user without a browser (the resource owner password grant), issued to
        the portal's client or to ``client`` (id, secret: see ``add_other_client``).

        Raises ``requests.HTTPError`` when the provider refuses, e.g. a wrong password (403).
        """
        client_id, client_secret = client or (self.client_id, self.client_secret)
        response = requests.post(
            self.token_endpoint,
            data={
                "grant_type": "password",
                "username": username,
                "password": password,
                "scope": scope,
                "client_id": client_id,
                "client_secret": client_secret,
            },
            timeout=HTTP_TIMEOUT,
        )
        _raise_for_status(response)
        tokens: dict[str, Any] = response.json()
        return tokens

    def userinfo(self, access_token: str) -> dict[str, Any]:
        """The userinfo response for an access token, as the portal's bearer auth sees it."""
        response = requests.get(
            self.userinfo_endpoint,
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=HTTP_TIMEOUT,
        )
        _raise_for_status(response)
        claims: dict[str, Any] = response.json()
        return claims

    def portal_settings(self) -> dict[str, Any]:
        """mozilla-django-oidc settings that point the portal at this provider."""
        return {
            "OIDC_RP_CLIENT_ID": self.client_id,
            "OIDC_RP_CLIENT_SECRET": self.client_secret,
            "OIDC_OP_AUTHORIZATION_ENDPOINT": self.authorization_endpoint,
            "OIDC_OP_TOKEN_ENDPOINT": self.token_endpoint,
            "OIDC_OP_USER_ENDPOINT": self.userinfo_endpoint,
            "OIDC_OP_JWKS_ENDPOINT": self.jwks_endpoint,
            "OIDC_OP_LOGOUT_ENDPOINT": self.end_session_endpoint,
            "OIDC_OP_INTROSPECTION_ENDPOINT": self.introspection_endpoint,
            "OIDC_RP_SIGN_ALGO": "RS256",
            "OIDC_RP_SCOPES": SCOPES,
        }


def _prepend_new(new: list[str], existing: list[str]) -> list[str]:
    return new + [uri for uri in existing if uri not in new]


def _environment(state_dir: Path, control_secret: str) -> dict[str, str]:
    return {
        **os.environ,
        # pytest-django exported the portal's settings module; the provider has its own.
        "DJANGO_SETTINGS_MODULE": "tests.idp.settings",
        "IDP_STATE_DIR": str(state_dir),
        "IDP_SECRET_KEY": secrets.token_urlsafe(50),
        "IDP_CONTROL_SECRET": control_secret,
        # Without it, runserver's output would sit in a buffer when the fixture shows it.
        "PYTHONUNBUFFERED": "1",
    }


def _manage(env: dict[str, str], *args: str) -> str:
    """Run a management command of the provider to completion; return its output."""
    # Management commands serve nothing, so they get no real port.
    result = subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=PROJECT_ROOT,
        env={**env, "IDP_PORT": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ProviderStartError(
            f"`django {' '.join(args)}` for the test identity provider exited with "
            f"{result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def _prepare(env: dict[str, str]) -> None:
    _manage(env, "migrate", "--no-input")
    output = _manage(env, "creatersakey")
    # creatersakey reports its own failures on stdout and still exits with 0.
    if "successfully created" not in output:
        raise ProviderStartError(f"creatersakey made no signing key:\n{output}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    """Return once the discovery document answers; raise with the server's output if not."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log_path.read_text(errors="replace")
            if "already in use" in output:
                raise _PortTaken
            raise ProviderStartError(
                f"The test identity provider exited with {process.returncode}:\n{output}"
            )
        try:
            response = requests.get(f"{base_url}/.well-known/openid-configuration", timeout=1)
            if response.ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise ProviderStartError(
        f"The test identity provider did not answer within {READY_TIMEOUT:.0f} s:\n"
        f"{log_path.read_text(errors='replace')}"
    )


def _start_server(env: dict[str, str], state_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start runserver on a free port of 127.0.0.1; return the ready process and its URL."""
    for attempt in range(START_ATTEMPTS):
        port = _free_port()
        base_url = f"http://127.0.0.1:{port}"
        log_path = state_dir / f"server-{attempt}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"],
                cwd=PROJECT_ROOT,
                env={**env, "IDP_PORT": str(port)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_until_ready(process, base_url, log_path)
        except _PortTaken:
            continue
        except BaseException:
            _stop(process)
            raise
        return process, base_url
    raise ProviderStartError(
        f"No free port for the test identity provider in {START_ATTEMPTS} tries"
    )


@contextmanager
def running_provider(state_dir: Path) -> Iterator[OidcProvider]:
    """Run a fresh provider whose database and logs live in ``state_dir``."""
    control_secret = secrets.token_urlsafe(32)
    env = _environment(state_dir, control_secret)
    _prepare(env)
    process, base_url = _start_server(env, state_dir)
    try:
        provider = OidcProvider.discover(
            base_url,
            client_id=f"portal-{secrets.token_hex(8)}",
            client_secret=secrets.token_urlsafe(32),
            control_secret=control_secret,
        )
        provider.register_client()
        yield provider
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """A real OpenID Connect provider on 127.0.0.1 for the whole test session."""
    with running_provider(tmp_path_factory.mktemp("oidc-provider")) as provider:
        yield provider
