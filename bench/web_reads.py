"""Web reads: which server runs the web, and what an authenticated API read costs.

Each web server configuration is started on a fresh PostgreSQL database (``bench_web``, dropped
at the end) and Redis (the request rates' counters, ``--redis``), bound to 127.0.0.1, and wrk
(1 thread, 10 connections, ``--seconds`` each) reads, with a portal token:
``GET /api/v1/session/`` (a user with one running session row: nothing is started),
``GET /api/v1/environments/`` and ``/healthz``. Per read: requests a second, p50, p99, answers
other than 2xx, and the web's CPU per request (its processes' CPU time over the requests).
The servers: gunicorn's threads on Django's WSGI handler (what the web ran), uvicorn's workers
in gunicorn on Django's own ASGI handler, the same on the portal's (``portal/asgi.py``: sync
views in one hop on a pool of threads), and Granian on the portal's, with 2 and 3 processes.
Then the chosen one as ``runportal`` runs it, on a Unix socket behind the router (nginx,
``portal/router.py``). Last, where the CPU of one read goes: cProfile over test-client requests,
in one process, by part (authentication, access policy, throttles, the view, DRF, Django).

The request rates are on (``API_THROTTLE_*``, far above what wrk sends): their cost is counted.

    .venv/bin/python bench/web_reads.py [--seconds 10] [--workers 2,3] [--servers ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
import requests
from psycopg import sql

# isort: split
from common import (
    ROOT,
    add_output_arguments,
    command_line,
    free_port,
    kill_group,
    machine_basics,
    manage,
    postgresql_version,
    publish,
    start,
    stop_on_signals,
)
from web_reads_report import PATHS, report

sys.path.insert(0, str(ROOT))
from portal.router import RouterConfig, command, prepare  # noqa: E402

DATABASE = "bench_web"  # the bench's own, created fresh and dropped: never DATABASE_URL's
SERVER = "postgres://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/14"
THREADS = 8  # WEB_THREADS, and gthread's --threads: as runportal runs the web
POOL = str(THREADS + 4)
SETUP = """
import json
from datetime import timedelta
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone
from portal.tokens import token_issue
from sessions_app.models import Environment, Session
user = get_user_model().objects.create_user("bench")
user.groups.add(Group.objects.get_or_create(name=settings.ACCESS_GROUP)[0])
now = timezone.now()
Session.objects.create(user=user, environment=Environment.objects.first(), state="running",
    created_at=now, started_at=now, expires_at=now + timedelta(hours=5),
    url=f"{settings.PORTAL_PUBLIC_URL}/user/bench/lab")
print(json.dumps({"token": token_issue(user=user, name="web reads benchmark")}))
"""
# In one process, with cProfile: the CPU of one read, by the part of the code it is spent in
# (cumulative times, scaled to the CPU of a read without the profiler), through the test
# client's handler with the server's view resolution (portal/asgi.py's sync chain).
PROFILE = """
import cProfile, json, pstats, time
from django.test import Client
from django.test.client import ClientHandler
try:  # the server's sync chain: an async view's sync_view answers a request that does not wait
    from portal.asgi import _SyncChain
    ClientHandler.resolve_request = _SyncChain.resolve_request
except ImportError:  # before portal/asgi.py had one
    pass
token, count = %(token)r, %(count)d
PARTS = {
    "authentication": [("portal/api_auth.py", "authenticate")],
    "access policy": [("accounts_app/permissions.py", "has_permission")],
    "request rates": [("portal/throttles.py", "allow_request")],
    "content negotiation": [("rest_framework/views.py", "perform_content_negotiation")],
    "view (query, serializer)": [("sessions_app/api.py", "get"),
                                 ("rest_framework/mixins.py", "list")],
    "rendering": [("rest_framework/response.py", "rendered_content")],
    "DRF": [("rest_framework/views.py", "dispatch")],
    "request": [("django/core/handlers/base.py", "get_response")],
}
client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="127.0.0.1")
out = {}
for path in ("/api/v1/session/", "/api/v1/environments/", "/healthz"):
    for _ in range(100):
        assert client.get(path).status_code == 200
    began = time.process_time()
    for _ in range(count):
        client.get(path)
    plain = (time.process_time() - began) / count
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    for _ in range(count):
        client.get(path)
    profile.disable()
    stats = pstats.Stats(profile).stats
    def part(names):
        return sum(v[3] for (f, _, fn), v in stats.items()
                   if any(f.endswith(s) and fn == n for s, n in names))
    total = part(PARTS["request"]) / count
    scale = plain / total if total else 0
    out[path] = {"cpu_ms": plain * 1000, **{k: part(v) / count * scale * 1000
                 for k, v in PARTS.items()}}
print(json.dumps(out))
"""


def recreate_database(server: str, drop_only: bool = False) -> None:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        name = sql.Identifier(DATABASE)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def servers(python: str) -> dict[str, dict[str, Any]]:
    """name -> what it is, its command for (workers, bind) and the variables it needs."""
    gunicorn = [python, "-m", "gunicorn", "--no-control-socket", "--log-level", "warning"]
    uvicorn = ["--worker-class", "uvicorn_worker.UvicornWorker"]
    asgi_env = {"WEB_THREADS": str(THREADS), "DATABASE_POOL_SIZE": POOL}
    found = {
        "gthread": {
            "what": f"gunicorn, gthread ({THREADS} threads), Django's WSGI handler",
            "command": lambda w, bind: [*gunicorn, "portal.wsgi:application", "--bind", bind,
                                        "--worker-class", "gthread", "--workers", str(w),
                                        "--threads", str(THREADS)],
            "env": {},
        },
        "uvicorn-django": {
            "what": "gunicorn + uvicorn workers, Django's ASGI handler",
            "command": lambda w, bind: [*gunicorn, "django.core.asgi:get_asgi_application()",
                                        "--bind", bind, *uvicorn, "--workers", str(w)],
            "env": asgi_env,
        },
        "uvicorn-portal": {
            "what": f"gunicorn + uvicorn workers, portal/asgi.py ({THREADS} threads)",
            "command": lambda w, bind: [*gunicorn, "portal.asgi:application", "--bind", bind,
                                        *uvicorn, "--workers", str(w)],
            "env": asgi_env,
        },
    }  # fmt: skip
    if shutil.which("granian", path=str(Path(python).parent)):
        found["granian-portal"] = {
            "what": f"Granian (ASGI), portal/asgi.py ({THREADS} threads)",
            "command": lambda w, bind: [
                python, "-m", "granian", "--interface", "asgi", "--workers", str(w),
                "--host", bind.split(":")[0], "--port", bind.split(":")[1], "--no-ws",
                "--loop", "uvloop", "--log-level", "warning", "--no-access-log",
                "portal.asgi:application",
            ],
            "env": asgi_env,
        }  # fmt: skip
    return found


def cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """CPU time of the server: its process and all of its children."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(process.pid)
        for each in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = each.cpu_times()
                total += times.user + times.system
    return total


def parse_latency(text: str) -> float:
    """wrk's latency (``812.00us``, ``4.20ms``, ``1.02s``) in ms."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise ValueError(f"not a wrk latency: {text!r}")
    factor = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[found.group(2)]
    return float(found.group(1)) * factor


def wrk(url: str, token: str, seconds: int, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    began = cpu_seconds(process)
    done = subprocess.run(
        ["wrk", "-t1", "-c10", f"-d{seconds}s", "--latency",
         "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    used = cpu_seconds(process) - began
    text = done.stdout
    count = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    other = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
        "p50_ms": parse_latency(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1)),  # type: ignore[union-attr]
        "p99_ms": parse_latency(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1)),  # type: ignore[union-attr]
        "requests": count,
        "not_2xx": int(other.group(1)) if other else 0,
        "socket_errors": errors.group(1) if errors else "",
        "web_cpu_ms": 1000 * used / max(count, 1),
    }


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer within 60 s: {log.read_text()[-3000:]}")
        time.sleep(0.2)


@contextlib.contextmanager
def running(
    command_: list[str], env: dict[str, str], log: Path, health: str
) -> Iterator[subprocess.Popen[bytes]]:
    process = start(command_, log, cwd=ROOT, env=env)
    try:
        wait_ready(health, process, log)
        time.sleep(1)  # every worker up, not only the first that answered
        yield process
    finally:
        kill_group(process)


def measure(
    base: str, token: str, seconds: int, process: subprocess.Popen[bytes]
) -> dict[str, Any]:
    # A warm-up per path: the first requests open connections and fill the processes' caches.
    for path in PATHS:
        wrk(f"{base}{path}", token, 2, process)
    return {path: wrk(f"{base}{path}", token, seconds, process) for path in PATHS}


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    recreate_database(args.server)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "WEB_"))}
    env.update(
        DATABASE_URL=f"{args.server}/{DATABASE}", CELERY_BROKER_URL=args.redis,
        PORTAL_VAR_DIR=str(work / "var"), LOG_LEVEL="WARNING",
        API_THROTTLE_USER="100000000/minute", API_THROTTLE_ADDRESS="100000000/minute",
    )  # fmt: skip
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    token = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])["token"]
    python = sys.executable
    runs: list[dict[str, Any]] = []
    known = servers(python)
    for name in args.servers:
        if name not in known:
            print(f"(no {name} here: skipped)")
            continue
        for workers in args.workers:
            port = free_port()
            bind = f"127.0.0.1:{port}"
            base = f"http://{bind}"
            server = known[name]
            log = work / f"{name}-{workers}.log"
            print(f"{name}, {workers} processes …", flush=True)
            with running(server["command"](workers, bind), {**env, **server["env"]}, log,
                         f"{base}/healthz") as process:  # fmt: skip
                reads = measure(base, token, args.seconds, process)
            runs.append({"server": name, "what": server["what"], "workers": workers, **reads})
    # The choice, as runportal runs it: on a Unix socket behind the router.
    work.chmod(0o711)  # nginx's workers (www-data as root) enter, as they do /run
    run_dir = work / "router"
    socket_path = run_dir / "web.sock"
    config = RouterConfig("127.0.0.1", free_port(), f"unix:{socket_path}", run_dir)
    prepare(config)
    chosen = known[args.routed]
    web_env = {**env, **chosen["env"], "TRUSTED_PROXY_HOPS": "1"}
    web_command = [*chosen["command"](2, f"unix:{socket_path}"), "--umask", "0o000"]
    nginx = start(command(config), work / "nginx.log")
    try:
        base = f"http://127.0.0.1:{config.listen_port}"
        with running(web_command, web_env, work / "routed.log", f"{base}/healthz") as process:
            routed = measure(base, token, args.seconds, process)
    finally:
        kill_group(nginx)
    print("profile …", flush=True)
    profile = json.loads(
        manage(env, "shell", "-c", PROFILE % {"token": token, "count": args.profile_requests})
        .strip()
        .splitlines()[-1]
    )
    return {"runs": runs, "routed": {"server": args.routed, "workers": 2, **routed},
            "profile": profile}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="of each wrk run (10)")
    parser.add_argument("--workers", default="2,3", help="web processes, each run (2,3)")
    parser.add_argument("--servers", default="gthread,uvicorn-django,uvicorn-portal,granian-portal")
    parser.add_argument(
        "--routed", default="uvicorn-portal", help="the server behind the router (the choice)"
    )
    parser.add_argument("--profile-requests", type=int, default=1000)
    parser.add_argument("--server", default=SERVER, help=f"PostgreSQL ({SERVER})")
    parser.add_argument("--redis", default=REDIS, help=f"Redis for the counters ({REDIS})")
    add_output_arguments(parser)
    args = parser.parse_args()
    args.workers = [int(n) for n in args.workers.split(",")]
    args.servers = args.servers.split(",")
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    stop_on_signals()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="jlp-bench-web-", dir="/tmp") as folder:
        try:
            results = run(args, Path(folder))
        finally:
            recreate_database(args.server, drop_only=True)
    now = datetime.now(UTC)
    results.update(
        date=f"{now:%Y-%m-%d %H:%M} UTC", command=command_line(), seconds=args.seconds,
        threads=THREADS, load_before=load_before, load_after=os.getloadavg()[0],
        machine={**machine_basics(), "postgresql": postgresql_version(args.server)},
        profile_requests=args.profile_requests,
    )  # fmt: skip
    publish(args, "Web reads", report(results), "web_reads", now, results)


if __name__ == "__main__":
    main()
