"""A real router for the tests: nginx (portal/router.py's configuration) in front of the
portal on pytest-django's live server, and servers on Unix sockets where the local back-end
puts them: a real JupyterLab, and a small server that answers with the request it received
(to see exactly what reaches a session's server)."""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import secrets
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from portal.router import RouterConfig, command, prepare
from sessions_app.models import Environment, Session
from tests.conftest import login_verified
from tests.sessions_app.local_world import session_python
from tests.sessions_app.pinned import pinned_state

SERVER_CONFIG = Path(settings.BASE_DIR) / "images" / "session" / "jupyter_server_config.py"

# The router's port: outside the kernel's ephemeral range (32768-60999), where nothing else of
# the machine's picks ports.
PORT_RANGE = range(18400, 18500)


def free_port() -> int:
    for port in PORT_RANGE:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE}")


@contextlib.contextmanager
def router_base() -> Iterator[Path]:
    """A folder for the router's files and the sockets that nginx's workers (www-data when
    root) can enter, as /run is: pytest's own temporary folders are private (0700)."""
    folder = Path(tempfile.mkdtemp(prefix="jlp-router-", dir="/tmp"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def socket_folder(base: Path, session_id: str) -> Path:
    """A session's socket folder as the local back-end makes it: only its owner and the
    router's group (www-data when root) may enter."""
    folder = base / "sockets" / session_id
    folder.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(folder, 0, grp.getgrnam("www-data").gr_gid)
        folder.chmod(0o2750)
    else:
        folder.chmod(0o700)
    return folder


def wait_for_socket(path: Path, process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_socket():
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        time.sleep(0.05)
    raise TimeoutError(f"no socket at {path} after {timeout} s")


@contextlib.contextmanager
def jupyterlab(
    folder: Path, base_url: str, root: Path, portal: dict[str, str] | None = None
) -> Iterator[tuple[Path, str]]:
    """A real JupyterLab of the session software (its extension and settings, the sessions'
    server configuration) on ``folder/jupyter.sock``; yields the socket and its token.

    ``portal``: the variables the spawner sets for the extension (JUPYTER_PORTAL_URL,
    JUPYTER_PORTAL_SESSION_ID)."""
    token = secrets.token_urlsafe(32)
    path = folder / "jupyter.sock"
    args = [
        str(Path(session_python()).with_name("jupyter-lab")),
        "--no-browser",
        f"--ServerApp.sock={path}",
        # The folder keeps everyone but the router's group out (socket_folder).
        "--ServerApp.sock_mode=0666",
        f"--ServerApp.base_url={base_url}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.allow_remote_access=True",
        f"--config={SERVER_CONFIG}",
    ]
    if os.geteuid() == 0:
        args.append("--ServerApp.allow_root=True")
    environment = {**os.environ, **(portal or {}), "JUPYTER_TOKEN": token, "HOME": str(root)}
    process = subprocess.Popen(
        args, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_socket(path, process, timeout=60)
        yield path, token
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with its own method, path and headers, as JSON."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        payload = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": [[name, value] for name, value in self.headers.items()],
                "body_length": len(body),
                # Its digest: the router blanks the token itself out of every answer.
                "authorization_sha256": hashlib.sha256(
                    self.headers.get("Authorization", "").encode()
                ).hexdigest(),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        return request, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port)


@contextlib.contextmanager
def echo_server(folder: Path) -> Iterator[Path]:
    path = folder / "jupyter.sock"
    server = _UnixHTTPServer(str(path), _Echo)
    path.chmod(0o666)  # the folder keeps everyone but the router's group out
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def nginx_router(run_dir: Path, web_upstream: str, auth_cache_seconds: int = 0) -> Iterator[str]:
    """nginx with the portal's configuration; yields its base URL."""
    config = RouterConfig(
        listen_host="127.0.0.1",
        listen_port=free_port(),
        web_upstream=web_upstream,
        run_dir=run_dir,
        # The policy tests want every request asked (a suspension: the very next one).
        auth_cache_seconds=auth_cache_seconds,
    )
    prepare(config)
    log = (run_dir.parent / "nginx.log").open("wb")
    process = subprocess.Popen(command(config), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{config.listen_port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                requests.get(f"{url}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"nginx did not start: {(run_dir.parent / 'nginx.log').read_text()}"
                    ) from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


# --- fixtures (module-scoped: one nginx and one JupyterLab per test module) ---------------------


@pytest.fixture(scope="module")
def router_folder() -> Iterator[Path]:
    with router_base() as folder:
        yield folder


@pytest.fixture(scope="module")
def router_url(live_server: Any, router_folder: Path) -> Iterator[str]:
    """nginx in front of the live server; its base URL."""
    web = live_server.url.removeprefix("http://").replace("localhost", "127.0.0.1")
    with nginx_router(router_folder / "router", web) as url:
        yield url


@pytest.fixture(scope="module")
def router_lab(router_folder: Path) -> Iterator[tuple[Path, str]]:
    """A JupyterLab for the user "owner" (route /user/owner/): its socket and token."""
    home = router_folder / "home"
    home.mkdir()
    with jupyterlab(socket_folder(router_folder, "lab"), "/user/owner/", home) as server:
        yield server


@pytest.fixture(scope="module")
def router_echo(router_folder: Path) -> Iterator[Path]:
    with echo_server(socket_folder(router_folder, "echo")) as path:
        yield path


def running_session(
    user: User,
    environment: Environment,
    socket_path: Path,
    token: str,
    session_id: uuid.UUID | None = None,
    seconds_left: float = 3600,
) -> Session:
    """A running session whose server listens on ``socket_path``, as the local back-end
    records it."""
    now = timezone.now()
    return Session.objects.create(
        id=session_id or uuid.uuid4(),
        user=user,
        environment=environment,
        state=Session.State.RUNNING,
        created_at=now,
        started_at=now,
        expires_at=now + timedelta(seconds=seconds_left),
        spawner_state=pinned_state(token, socket_path),
    )


def browser_for(user: User) -> requests.Session:
    """A browser's cookies: signed in to the portal with the second factor passed."""
    client = Client()
    login_verified(client, user)
    browser = requests.Session()
    name = settings.SESSION_COOKIE_NAME
    browser.cookies.set(name, client.cookies[name].value)
    return browser
