"""Per-request latency through the router (nginx + the portal's forward-auth) vs direct to the
server's Unix socket.

Real processes: a JupyterLab on a Unix socket, the portal's web (gunicorn, as runportal starts
it, on SQLite in a temporary var/) and nginx with portal/router.py's configuration. One client,
keep-alive, sequential ``GET /user/bench/api/status``: directly on the socket with the server's
token, then through nginx with a portal token (so every request also pays the forward-auth
subrequest); and the forward-auth alone (``GET /auth/route/`` on the web's socket). Target
(issue 10): at most +1 ms median through the router.

    python bench/router.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import grp
import http.client
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    add_output_arguments,
    command_line,
    kill_group,
    machine_basics,
    manage,
    publish,
    start,
    stop_on_signals,
)

sys.path.insert(0, str(ROOT))
from portal.router import RouterConfig, command, prepare  # noqa: E402

ROUTE = "/user/bench/"
SETUP = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.conf import settings
from django.utils import timezone
from datetime import timedelta
from portal.tokens import token_issue
from sessions_app.models import Environment, Session
user = get_user_model().objects.create_user("bench")
user.groups.add(Group.objects.get_or_create(name=settings.ACCESS_GROUP)[0])
now = timezone.now()
Session.objects.create(user=user, environment=Environment.objects.first(), state="running",
    created_at=now, started_at=now, expires_at=now + timedelta(hours=5),
    spawner_state={"socket": "%(socket)s", "token": "%(token)s", "session_id": "bench"})
print(token_issue(user=user))
"""


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def timed(connection: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> float:
    began = time.perf_counter()
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.read()
    took = time.perf_counter() - began
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status}")
    return took


def series(
    connection: http.client.HTTPConnection, path: str, headers: dict[str, str], count: int
) -> list[float]:
    for _ in range(50):  # warm-up: connections, caches, the JIT of nothing
        timed(connection, path, headers)
    return [timed(connection, path, headers) for _ in range(count)]


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path}")
        time.sleep(0.1)


def figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
    }


def run(count: int, work: Path) -> dict[str, Any]:
    work.chmod(0o711)  # nginx's workers (www-data as root) enter, as they do /run
    sockets = work / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        os.chown(sockets, 0, grp.getgrnam("www-data").gr_gid)
    sockets.chmod(0o2750)
    token = secrets.token_urlsafe(32)
    lab_socket = sockets / "jupyter.sock"
    var = work / "var"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL")
    }
    env.update(PORTAL_VAR_DIR=str(var), CELERY_BROKER_URL="memory://", TRUSTED_PROXY_HOPS="1")
    manage(env, "migrate", "--verbosity", "0")
    made = manage(env, "shell", "-c", SETUP % {"socket": lab_socket, "token": token})
    portal_token = made.strip().splitlines()[-1]  # after the shell's own notices
    lab_args = [
        str(Path(sys.executable).with_name("jupyter-lab")), "--no-browser",
        f"--ServerApp.sock={lab_socket}", "--ServerApp.sock_mode=0666",
        f"--ServerApp.base_url={ROUTE}", f"--ServerApp.root_dir={work}",
        "--ServerApp.allow_remote_access=True",
    ]  # fmt: skip
    if os.geteuid() == 0:
        lab_args.append("--ServerApp.allow_root=True")
    run_dir = work / "router"
    web_socket = run_dir / "web.sock"
    config = RouterConfig("127.0.0.1", 18490, f"unix:{web_socket}", run_dir, auth_cache_seconds=0)
    cached = RouterConfig("127.0.0.1", 18491, f"unix:{web_socket}", work / "router-cached")
    prepare(config)
    prepare(cached)
    lab = start(lab_args, work / "lab.log", env={**env, "JUPYTER_TOKEN": token, "HOME": str(work)})
    web = start(
        [
            sys.executable, "-m", "gunicorn", "portal.asgi:application", "--bind",
            f"unix:{web_socket}", "--umask", "0o000",
            "--worker-class", "uvicorn_worker.UvicornWorker", "--workers", "2",
            "--no-control-socket",
        ],
        work / "web.log", cwd=ROOT, env=env,
    )  # fmt: skip
    nginx = start(command(config), work / "nginx.log")
    nginx_cached = start(command(cached), work / "nginx-cached.log")
    try:
        wait_for(lab_socket)
        wait_for(web_socket)
        time.sleep(1)
        status = f"{ROUTE}api/status"
        direct = series(
            UnixConnection(str(lab_socket)), status, {"Authorization": f"token {token}"}, count
        )
        routed = series(
            http.client.HTTPConnection("127.0.0.1", config.listen_port),
            status,
            {"Authorization": f"Bearer {portal_token}"},
            count,
        )
        routed_cached = series(
            http.client.HTTPConnection("127.0.0.1", cached.listen_port),
            status,
            {"Authorization": f"Bearer {portal_token}"},
            count,
        )
        auth = series(
            UnixConnection(str(web_socket)),
            "/auth/route/",
            {"Authorization": f"Bearer {portal_token}", "X-Original-URI": status},
            count,
        )
    finally:
        for process in (nginx, nginx_cached, web, lab):
            kill_group(process)
    return {
        "requests": count,
        "direct": figures(direct),
        "router": figures(routed),
        "router_cached": figures(routed_cached),
        "auth_cache_seconds": cached.auth_cache_seconds,
        "forward_auth": figures(auth),
    }


def report(results: dict[str, Any], now: datetime) -> str:
    machine = results["machine"]
    direct, routed, auth = results["direct"], results["router"], results["forward_auth"]
    cached = results["router_cached"]
    overhead = routed["median_ms"] - direct["median_ms"]
    cached_overhead = cached["median_ms"] - direct["median_ms"]
    verdict = "meets" if cached_overhead <= 1.0 else "misses"
    seconds = results["auth_cache_seconds"]
    return f"""## Router: per-request latency

`bench/router.py`, {now:%Y-%m-%d}: {results["requests"]} sequential keep-alive
`GET /user/bench/api/status` from one client, on {machine["nproc"]} CPUs ({machine["cpu"]}),
Python {machine["python"]}. The portal's web is gunicorn with uvicorn's workers (2 processes,
8 threads each for sync views) on SQLite, as `runportal` starts it; nginx runs
portal/router.py's configuration.

| path | median | p99 |
| --- | --- | --- |
| direct to JupyterLab's Unix socket (its token) | {direct["median_ms"]:.2f} ms | {direct["p99_ms"]:.2f} ms |
| through nginx, forward-auth answer kept {seconds} s (the default) | {cached["median_ms"]:.2f} ms | {cached["p99_ms"]:.2f} ms |
| through nginx, forward-auth asked on every request (`LOCAL_ROUTER_AUTH_CACHE_SECONDS=0`) | {routed["median_ms"]:.2f} ms | {routed["p99_ms"]:.2f} ms |
| the forward-auth alone (`/auth/route/` on the web's socket) | {auth["median_ms"]:.2f} ms | {auth["p99_ms"]:.2f} ms |

With the default, the router adds **{cached_overhead:+.2f} ms** per request at the median: it
{verdict} the target of +1 ms. Asking the portal on every request adds {overhead:+.2f} ms: the
forward-auth is a whole Django request (the token's lookup, the access policy and suspension,
the session row), so nginx keeps an allowed answer for {seconds} s per caller (their cookies or
Authorization header) and route; refusals are never kept. The price: a suspension or a stop
reaches ongoing HTTP requests up to {seconds} s later (a stop ends the server anyway). A
websocket asks once, at the upgrade; its messages then flow through nginx alone.

Command: `{results["command"]}`
"""  # noqa: E501


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    add_output_arguments(parser)
    args = parser.parse_args()
    stop_on_signals()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="jlp-bench-router-", dir="/tmp") as folder:
        results = run(args.requests, Path(folder))
    results["machine"] = machine_basics()
    results["command"] = command_line()
    publish(args, "Router: per-request latency", report(results, now), "router", now, results)


if __name__ == "__main__":
    main()
