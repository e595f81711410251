"""Waiting clients: what clients waiting for their session cost the portal, and how soon they hear.

Starts the portal as ``make run`` does (``manage.py runportal``: nginx, the web server behind it,
the Celery workers and beat, the embedded broker) on a fresh PostgreSQL database (``bench_wait``,
dropped at the end): waiting clients are woken by ``NOTIFY``. The sessions' pool is one
environment, held by the "observer"'s real running session, so every other launch queues. Then:
the crowd (20 users with 10 long polls ``GET /api/v1/session/?wait=30`` each, sent again as they
return, and 50 users with the session page's event stream ``GET /session/events/``, each user
from an address of its own, 127.0.0.x); the observer's sequential requests with nobody and with
the crowd waiting; the web processes' memory and idle CPU, without and with the crowd; and the
wake-up: each crowd user stops (``DELETE /api/v1/session/``) in turn, timed until each of its
clients is answered. Writes the "Waiting clients" section of ``docs/benchmarks.md`` and raw JSON
in ``bench/results/``. Usage: ``.venv/bin/python bench/waiting.py [--users 20] [--polls 10]
[--streams 50] [--probes 300] [--idle 10] [--port N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import requests
from psycopg import sql

# isort: split
# The scripts' shared helpers (bench/ is on sys.path: the script's folder).
from common import (
    ROOT,
    add_output_arguments,
    command_line,
    kill_group,
    machine_basics,
    manage,
    postgresql_version,
    print_portal_logs,
    publish,
    start,
    stop_on_signals,
)
from launch_probes import http_client, port_free
from waiting_report import TARGET_WAKE_S, report

DATABASE = "bench_wait"  # the bench's own, created fresh and dropped: never DATABASE_URL's
SERVER = "postgres://postgres@127.0.0.1:5432"
PORT = 18476
WAIT = 30  # seconds: the long poll's ?wait=
# What runportal's web child may be: the WSGI server it had, the ASGI server it moves to.
WEB_MARKS = ("gunicorn", "uvicorn", "hypercorn", "daphne", "granian", "portal.asgi", "portal.wsgi")
# Variables of the portal's that change these figures: named in the report's command.
TUNING = ("WAIT_", "WEB_", "DATABASE_POOL", "SESSION_EVENTS", "WORKER_CONCURRENCY")
SETUP = """
import json
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from accounts_app.second_factor import SESSION_KEY
from portal.tokens import token_issue
from sessions_app.models import Environment
from terms_app.services import terms_accept, terms_current

group, _ = Group.objects.get_or_create(name=settings.ACCESS_GROUP)
version = terms_current().version
tokens, cookies = {}, {}
for name in NAMES:
    user = get_user_model().objects.create_user(name)  # a member of the access group, no staff
    user.groups.add(group)
    terms_accept(user=user, version=version, ip_address=None, user_agent="waiting benchmark")
    tokens[name] = token_issue(user=user, name="waiting benchmark")
    if name in COOKIES:  # a browser session that passed the second factor
        client = Client()
        client.force_login(user)
        session = client.session
        session[SESSION_KEY] = "totp"
        session.save()
        cookies[name] = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
environment = Environment.objects.filter(enabled=True).order_by("cpus", "memory_mb").first()
print(json.dumps({
    "tokens": tokens, "cookies": cookies, "environment": environment.slug,
    "cpus": environment.cpus, "memory_mb": environment.memory_mb,
    "runtime_dir": str(settings.LOCAL_SPAWNER_RUNTIME_DIR),
    "socket_dir": str(settings.LOCAL_SPAWNER_SOCKET_DIR),
    "router_run_dir": str(settings.LOCAL_ROUTER_RUN_DIR),
}))
"""


def recreate_database(server: str, drop_only: bool = False) -> None:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        name = sql.Identifier(DATABASE)
        # FORCE: connections an interrupted run left open must not keep the database alive.
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def until(check: Any, what: str, timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def quantiles(seconds: list[float]) -> dict[str, float | int]:
    """p50, p99 and max in ms (nearest rank), and how many."""
    ordered = sorted(seconds)
    if not ordered:
        return {"count": 0, "p50_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000

    return {"count": len(ordered), "p50_ms": rank(0.5), "p99_ms": rank(0.99), "max_ms": rank(1)}


class Crowd:
    """The waiting clients, on an event loop in a thread of their own. Times are
    ``time.perf_counter()``, comparable with the main thread's."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.clients: list[httpx.AsyncClient] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.answers: dict[str, list[float]] = {}  # user -> when each of its clients was told
        self.expected: dict[str, int] = {}
        self.done: dict[str, threading.Event] = {}
        self.connected: set[str] = set()  # stream users whose stream showed the queued session
        self.in_flight = 0  # long polls sent and not yet answered
        self.counts = {"answered": 0, "refused_429": 0, "events": 0, "errors": 0}

    def run(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def client(self, index: int, header: dict[str, str]) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(
            local_address=f"127.0.0.{10 + index}",  # the user's own address
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        )
        made = httpx.AsyncClient(
            base_url=self.base, headers=header, transport=transport, trust_env=False,
            timeout=httpx.Timeout(10.0, read=WAIT + 60.0),
        )  # fmt: skip
        self.clients.append(made)
        return made

    def told(self, user: str) -> None:
        self.answers[user].append(time.perf_counter())
        if len(self.answers[user]) >= self.expected[user]:
            self.done[user].set()

    async def start(self, pollers: dict[str, str], streamers: dict[str, str], polls: int) -> None:
        for index, (user, header) in enumerate([*pollers.items(), *streamers.items()]):
            self.answers[user], self.done[user] = [], threading.Event()
            if user in pollers:
                self.expected[user] = polls
                client = self.client(index, {"Authorization": f"Bearer {header}"})
                coroutines = [self.poll(client, user) for _ in range(polls)]
            else:
                self.expected[user] = 1
                client = self.client(index, {"Cookie": header, "Accept": "text/event-stream"})
                coroutines = [self.stream(client, user)]
            self.tasks += [self.loop.create_task(c) for c in coroutines]
            await asyncio.sleep(0.01)  # spread out, as people arrive

    async def poll(self, client: httpx.AsyncClient, user: str) -> None:
        while True:
            self.in_flight += 1
            try:
                answer = await client.get("/api/v1/session/", params={"wait": WAIT})
            except httpx.HTTPError:
                self.counts["errors"] += 1
                await asyncio.sleep(1)
                continue
            finally:
                self.in_flight -= 1
            if answer.status_code == 429:
                self.counts["refused_429"] += 1
                await asyncio.sleep(float(answer.headers.get("Retry-After", 5)))
            elif answer.status_code == 404 or answer.json()["state"] not in ("queued", "starting"):
                return self.told(user)
            else:
                self.counts["answered"] += 1  # its time was up: sent again, as a client does

    async def stream(self, client: httpx.AsyncClient, user: str) -> None:
        while True:  # the server ends a stream after a while; the browser reconnects
            try:
                async with client.stream("GET", "/session/events/") as response:
                    if response.status_code != 200:
                        raise httpx.HTTPError(f"the stream answered {response.status_code}")
                    kind = ""
                    async for line in response.aiter_lines():
                        if line.startswith("event: "):
                            kind = line.removeprefix("event: ")
                        elif line.startswith("data: "):
                            self.counts["events"] += 1
                            payload = json.loads(line.removeprefix("data: "))
                            if kind == "busy":
                                self.counts["refused_429"] += 1
                            elif kind == "status" and payload["active"]:
                                self.connected.add(user)
                            else:
                                return self.told(user)
            except httpx.HTTPError:
                self.counts["errors"] += 1
            await asyncio.sleep(1)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for client in self.clients:
            await client.aclose()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # Short: the session's socket path must stay under 108 bytes.
        self.var = Path(tempfile.mkdtemp(prefix="jlp-wb-", dir="/tmp")).resolve()
        self.base = f"http://127.0.0.1:{args.port}"
        self.pollers = [f"poller{i}" for i in range(args.users)]
        self.streamers = [f"streamer{i}" for i in range(args.streams)]
        self.observer = "observer"
        self.portal: subprocess.Popen[bytes] | None = None
        self.crowd: Crowd | None = None
        self.facts: dict[str, Any] = {}
        self.results: dict[str, Any] = {}

    def api(self, user: str) -> requests.Session:
        return http_client(self.facts["tokens"][user])

    def setup(self) -> None:
        if not port_free(self.args.port):
            raise RuntimeError(f"port {self.args.port} is taken: choose another with --port")
        recreate_database(self.args.server)
        dropped = ("DATABASE_URL", "CELERY_BROKER_URL", "PORTAL_PUBLIC_URL", "PORTAL_HOST",
                   "PORTAL_PORT", "SESSION_POOL_CPUS", "SESSION_POOL_MEMORY_MB")  # fmt: skip
        env = {key: value for key, value in os.environ.items() if key not in dropped}
        # No CELERY_BROKER_URL: the embedded broker, as `make run` has it.
        env.update(DATABASE_URL=f"{self.args.server}/{DATABASE}", PORTAL_VAR_DIR=str(self.var))
        manage(env, "migrate", "--noinput")
        names = [self.observer, *self.pollers, *self.streamers]
        script = f"NAMES = {names!r}\nCOOKIES = {[self.observer, *self.streamers]!r}\n{SETUP}"
        self.facts = json.loads(manage(env, "shell", "-c", script).strip().splitlines()[-1])
        # The pool holds exactly one session of the environment: the observer's.
        env["SESSION_POOL_CPUS"] = str(self.facts["cpus"])
        env["SESSION_POOL_MEMORY_MB"] = str(self.facts["memory_mb"])
        command = [sys.executable, "manage.py", "runportal", "--host", "127.0.0.1",
                   "--port", str(self.args.port)]  # fmt: skip
        self.portal = start(command, self.var / "runportal.log", cwd=ROOT, env=env)
        # The workers log to var/log/ (runportal keeps its terminal for the banner).
        log = self.var / "log" / "worker-spawn.log"
        until(lambda: self.answers("/healthz"), "the portal through nginx", 120)
        until(
            lambda: log.exists() and " ready." in log.read_text(errors="replace"),
            "the Celery worker",
            120,
        )
        web = self.web_processes()
        self.results["web_command"] = " ".join(
            Path(part).name if i == 0 else part for i, part in enumerate(web[0].cmdline())
        )
        self.results["web_processes"] = len(web)
        self.launch(self.observer, "running")
        for user in [*self.pollers, *self.streamers]:
            self.launch(user, "queued")
        print(f"observer's session runs; {len(self.pollers) + len(self.streamers)} queued",
              flush=True)  # fmt: skip

    def answers(self, path: str) -> bool:
        with contextlib.suppress(requests.RequestException):
            return http_client().get(self.base + path, timeout=5).status_code == 200
        return False

    def launch(self, user: str, state: str) -> None:
        client = self.api(user)
        made = client.post(f"{self.base}/api/v1/session/", json={"environment": self.facts[
            "environment"]}, timeout=30)  # fmt: skip
        if made.status_code != 201 or made.json()["state"] != "queued":
            raise RuntimeError(f"launch for {user}: {made.status_code} {made.text[:300]}")
        deadline = time.monotonic() + 180
        while state == "running" and not made.json()["url"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{user}'s session: not running within 180 s")
            made = client.get(f"{self.base}/api/v1/session/?wait={WAIT}", timeout=WAIT + 30)
            if made.status_code != 200:
                raise RuntimeError(f"{user}'s session ended: {made.text[:300]}")

    def web_processes(self) -> list[psutil.Process]:
        """runportal's web child and its own children (a server's worker processes)."""
        assert self.portal is not None
        found = []
        for child in psutil.Process(self.portal.pid).children():
            with contextlib.suppress(psutil.Error):
                if any(mark in " ".join(child.cmdline()) for mark in WEB_MARKS):
                    found += [child, *child.children(recursive=True)]
        if not found:
            raise RuntimeError("no web server among runportal's children")
        return found

    def web_usage(self) -> tuple[float, float]:
        """(resident MB, CPU seconds) of the web processes together."""
        rss = cpu = 0.0
        for proc in self.web_processes():
            with contextlib.suppress(psutil.Error):
                rss += proc.memory_info().rss / 2**20
                cpu += sum(proc.cpu_times()[:2])
        return rss, cpu

    def probes(self) -> dict[str, Any]:
        """The observer's requests, sequential on one keep-alive connection, taking turns."""
        token = {"Authorization": f"Bearer {self.facts['tokens'][self.observer]}"}
        cookie = {"Cookie": self.facts["cookies"][self.observer]}
        targets = {"healthz": ("/healthz", {}), "environments": ("/api/v1/environments/", token),
                   "session_api": ("/api/v1/session/", token),
                   "session_page": ("/session/", cookie)}  # fmt: skip
        samples: dict[str, list[float]] = {name: [] for name in targets}
        conn = http.client.HTTPConnection("127.0.0.1", self.args.port, timeout=WAIT + 30)
        deadline = time.monotonic() + self.args.probe_seconds
        for i in range(self.args.probes + 10):  # the first 10 rounds are not counted
            for name, (path, headers) in targets.items():
                began = time.perf_counter()
                conn.request("GET", path, headers=headers)
                try:
                    response = conn.getresponse()
                except TimeoutError as exc:  # a web of threads, all of them taken by waits
                    raise RuntimeError(f"GET {path}: no answer in {WAIT + 30} s") from exc
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"GET {path}: {response.status}")
                if i >= 10:
                    samples[name].append(time.perf_counter() - began)
            if time.monotonic() > deadline:
                break
        conn.close()
        return {name: quantiles(values) for name, values in samples.items()}

    def quiet(self, label: str) -> None:
        """The web's memory, and its CPU over ``--idle`` seconds of nobody asking."""
        crowd = self.crowd
        answered = crowd.counts["answered"] if crowd else 0
        rss, cpu = self.web_usage()
        time.sleep(self.args.idle)
        cpu_after = self.web_usage()[1]
        self.results[f"web_{label}"] = {
            "rss_mb": rss, "cpu_s": cpu_after - cpu, "idle_s": self.args.idle,
            "waiting_polls": crowd.in_flight if crowd else 0,
            "streams": len(crowd.connected) if crowd else 0,
            "polls_answered_meanwhile": (crowd.counts["answered"] if crowd else 0) - answered,
        }  # fmt: skip
        print(f"{label}: web {rss:.0f} MB, {cpu_after - cpu:.2f} CPU-s in {self.args.idle} s",
              flush=True)  # fmt: skip

    def run(self) -> None:
        self.results["probes_none"] = self.probes()
        self.quiet("none")
        self.crowd = crowd = Crowd(self.base)
        tokens, cookies = self.facts["tokens"], self.facts["cookies"]
        pollers = {user: tokens[user] for user in self.pollers}
        crowd.run(crowd.start(pollers, {u: cookies[u] for u in self.streamers}, self.args.polls))
        polls = len(self.pollers) * self.args.polls
        with contextlib.suppress(TimeoutError):
            until(lambda: len(crowd.connected) == len(self.streamers) and crowd.in_flight == polls,
                  "the crowd", 60)  # fmt: skip
        time.sleep(2)  # the last requests reach their wait
        print(f"waiting: {crowd.in_flight} polls, {len(crowd.connected)} streams", flush=True)
        self.quiet("crowd")
        answered = crowd.counts["answered"]
        self.results["probes_crowd"] = self.probes()
        self.results["answered_during_probes"] = crowd.counts["answered"] - answered
        self.results["crowd"] = {"polls": crowd.in_flight, "streams": len(crowd.connected)}
        self.results["wake"] = {
            "polls": self.wake(self.pollers),
            "streams": self.wake(self.streamers),
        }
        self.results["counts"] = dict(crowd.counts)

    def wake(self, users: list[str]) -> dict[str, Any]:
        """Each user stops in turn; how long until each of its clients was told."""
        assert self.crowd is not None
        began: dict[str, float] = {}
        deletes = []
        for user in users:
            client = self.api(user)
            began[user] = time.perf_counter()
            stop = client.delete(f"{self.base}/api/v1/session/", timeout=30)
            deletes.append(time.perf_counter() - began[user])
            if stop.status_code != 202:
                raise RuntimeError(f"stop of {user}: {stop.status_code} {stop.text[:300]}")
            self.crowd.done[user].wait(5)  # later answers still count, below
        deadline = time.monotonic() + WAIT + 10
        for user in users:
            self.crowd.done[user].wait(max(0.0, deadline - time.monotonic()))
        took = [t - began[u] for u in users for t in self.crowd.answers[u]]
        expected = sum(self.crowd.expected[u] for u in users)
        return {**quantiles(took), "expected": expected, "seconds": took,
                "within_target": sum(1 for s in took if s <= TARGET_WAKE_S),
                "delete": quantiles(deletes)}  # fmt: skip

    def cleanup(self) -> None:
        if self.crowd is not None:
            with contextlib.suppress(Exception):
                self.crowd.run(self.crowd.close(), 30)
            self.crowd.loop.call_soon_threadsafe(self.crowd.loop.stop)
        if self.portal is not None:
            with contextlib.suppress(ProcessLookupError):
                self.portal.send_signal(signal.SIGTERM)  # runportal stops its children in order
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.portal.wait(60)
            kill_group(self.portal, 0)
        if self.facts:  # the observer's server (and any other): its whole cgroup, as launch.py
            from sessions_app.spawners.local import LocalProcessSpawner

            spawner = LocalProcessSpawner(
                Path(self.facts["runtime_dir"]), socket_dir=Path(self.facts["socket_dir"])
            )
            for server in spawner.list_servers():
                with contextlib.suppress(Exception):
                    spawner.stop(server.state)
            shutil.rmtree(self.facts["router_run_dir"], ignore_errors=True)
        with contextlib.suppress(psycopg.Error):
            recreate_database(self.args.server, drop_only=True)
        shutil.rmtree(self.var, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=20, help="users with long polls (20)")
    parser.add_argument("--polls", type=int, default=10, help="long polls of each (10)")
    parser.add_argument("--streams", type=int, default=50, help="users with a stream (50)")
    parser.add_argument("--probes", type=int, default=300, help="requests of each kind (300)")
    parser.add_argument("--probe-seconds", type=float, default=120, help="at most, per phase")
    parser.add_argument("--idle", type=float, default=10, help="seconds of idle CPU (10)")
    parser.add_argument("--port", type=int, default=PORT, help=f"the portal's port ({PORT})")
    parser.add_argument("--server", default=SERVER, help=f"PostgreSQL ({SERVER})")
    add_output_arguments(parser)
    args = parser.parse_args()
    stop_on_signals()
    bench, load_before = Bench(args), os.getloadavg()[0]
    try:
        bench.setup()
        bench.run()
    except BaseException:
        print_portal_logs(bench.var)
        raise
    finally:
        bench.cleanup()
    now = datetime.now(UTC)
    tuning = "".join(
        f"{k}={shlex.quote(v)} " for k, v in os.environ.items() if k.startswith(TUNING)
    )
    results = {
        **bench.results, "date": f"{now:%Y-%m-%d %H:%M} UTC", "command": command_line(tuning),
        "machine": {**machine_basics(), "postgresql": postgresql_version(args.server)},
        "load_before": load_before, "port": args.port, "users": args.users,
        "polls_each": args.polls, "wait": WAIT, "streams_wanted": args.streams,
        "probes": args.probes,
        "runner": "root" if os.geteuid() == 0 else "an ordinary user",
        "cpus": bench.facts["cpus"], "memory_mb": bench.facts["memory_mb"],
    }  # fmt: skip
    publish(args, "Waiting clients", report(results), "waiting", now, results)


if __name__ == "__main__":
    main()
