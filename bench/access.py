"""Access-guard benchmark: what authenticating and guarding one request costs, per way in.

Starts the portal for real (gunicorn, one process, on a fresh PostgreSQL database) as a relying
party of the test OpenID Connect provider (``tests.idp.provider``, its own process), plus a
second gunicorn, the same but for ``OIDC_BEARER_CACHE_SECONDS=0``, on the same database; and
measures in one run, interleaved so that a noisy machine hits every path alike:

- ``GET /api/v1/environments/`` with a portal token (``jlp_…``), with the provider's access
  token twice: remembered for the default ``OIDC_BEARER_CACHE_SECONDS`` (the first server) and
  checked at the provider's userinfo endpoint on every request (the second server); and with
  a browser session that passed the second factor;
- ``GET /terms/``, a page, with that browser session (the pages' middleware guard);
- ``GET /login/``, anonymous: a public page that skips the guard, the floor;
- the provider's userinfo endpoint alone, called as the portal calls it.

Per path: latency of sequential requests (median, p90), requests/s with 8 concurrent clients
(8 different users), the portal's CPU per request, and the SQL queries per request (counted
in this process with Django's test client on the same database). It writes the "Access guard"
section of ``docs/benchmarks.md`` and raw JSON under ``bench/results/``.
Usage: ``.venv/bin/python bench/access.py [--requests 500] [--server postgres://…]``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psutil
import psycopg
from psycopg import sql

# isort: split
# The scripts' shared helpers, bench/common.py (bench/ is on sys.path: the script's folder).
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

if TYPE_CHECKING:
    from tests.idp.provider import OidcProvider

# The bench's own database, created fresh and dropped at the end: never one named by the
# environment's DATABASE_URL, which may be somebody's data.
DATABASE = "portal_bench_access"
SERVER = "postgres://postgres@127.0.0.1:5432"
# One gunicorn process, threaded as `make run` starts each of its processes; without the
# control socket, whose default path (~/.gunicorn/) every other gunicorn here shares. Two of
# them: the portal as configured ("cached") and one that asks the provider about its access
# tokens on every request ("uncached").
WEB = (
    "-m gunicorn portal.wsgi:application --bind {address} --worker-class gthread --workers 1 "
    "--threads 16 --no-control-socket"
)
API = "/api/v1/environments/"
CLIENTS = 8  # concurrent clients, each a different user
WARMUP = 50  # uncounted requests per path before the sequential rounds
BLOCK = 25  # sequential requests per path in a row before the next path's turn
PER_ROUND = 240  # requests per concurrent round (all clients together)
ROUNDS = 10  # concurrent rounds per path
QUERY_SAMPLES = 10  # in-process requests per path whose queries are counted
BREAKDOWN_SAMPLES = 100  # in-process timings of each part of the guard
# The guard's parts timed alone, in this process (``Bench.time_parts``).
PART_NAMES = ("token_resolve", "bearer_hit", "userinfo", "user_for_claims", "access_refusal")
SESSION_HOURS = 24  # how long the sessions' ID tokens count as fresh (no re-check meanwhile)
REPORT = """## Access guard

Measured {date} with `{command}` on {nproc} CPUs ({cpu}), {ram_gib} GiB RAM, Linux {kernel},
Python {python}, Django {django}, gunicorn {gunicorn}, PostgreSQL {postgresql}; load average
{load_before:.2f} (1 min) before the run (other work on the machine makes the figures noisy:
compare the ratios, which come from one run with the paths interleaved).

| request | median | p90 | vs portal token | req/s, {clients} clients | vs portal token | SQL queries per request | portal CPU per request |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

{notes}

Peak resident memory of the portal with the cache (gunicorn: master and one process × 16
threads): {rss_total:.0f} MB, of which the serving process {rss_worker:.0f} MB
({rss_worker_start:.0f} MB after start-up). The test provider used {provider_cpu_uncached:.1f} ms
of CPU per uncached provider-token request ({provider_cpu_cached:.2f} ms per cached one) on the
same CPUs, which lowers the uncached path's requests/s here more than a provider on a machine of
its own would.

API: `GET {api}`, the launchable environments as JSON. Latency: {requests} sequential
requests per path on a keep-alive connection, in blocks of {block} taking turns, after {warmup}
uncounted ones. Requests/s: {clients} clients (threads, each its own user and connection)
sending {per_round} requests together, median of {rounds} rounds per path, taking turns. Queries: Django's test client in the benchmark's process on
the same database, most frequent count of {query_samples} requests after one uncounted (on the
cached path, the miss that remembers the token), the uncached one with the setting at 0.
CPU: user + system time of the gunicorn processes during the sequential requests. The portal
is a relying party of `tests.idp.provider` (django-oidc-provider under `runserver` with
SQLite, on the same machine: no network between them, so a real provider adds its network
round trip on top). The uncached row comes from a second gunicorn, the same but for
`OIDC_BEARER_CACHE_SECONDS=0`, on the same database; every other row from the first, with the
default {cache_seconds} s. The cache is Django's default (memory of each gunicorn process), so a
token misses once per {cache_seconds} s per process: those misses are in the cached figures.
Raw figures: `bench/results/` (not in git).
"""  # noqa: E501 (a Markdown table row is one line)


# --- Processes and the database ---------------------------------------------------------------


def recreate_database(server: str, drop_only: bool = False) -> None:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        name = sql.Identifier(DATABASE)
        # FORCE: connections an interrupted run left open must not keep the database alive.
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


# --- HTTP ---------------------------------------------------------------------------------------


@dataclass
class Target:
    """One way in: a URL and, per client, the headers that authenticate it."""

    key: str
    label: str
    url: str
    headers: list[dict[str, str]]
    # A new connection per request: how the portal calls the provider (``requests.get``).
    fresh: bool = False
    # The portal server that answers ("cached" or "uncached"); "" for the provider.
    server: str = ""


class Client:
    """A keep-alive HTTP/1.1 client with little overhead of its own (no ``requests``)."""

    def __init__(self, target: Target, index: int = 0) -> None:
        parts = urlsplit(target.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.headers = target.headers[index % len(target.headers)]
        self.fresh, self.label = target.fresh, target.label
        self.conn: http.client.HTTPConnection | None = None

    def get(self) -> float:
        """One request; seconds from sending it until the whole answer has arrived."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        t0 = time.perf_counter()
        self.conn.request("GET", self.path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - t0
        if response.status != 200:
            raise RuntimeError(f"{self.label}: {response.status} {body[:300]!r}")
        if self.fresh or response.will_close:
            self.close()
        return elapsed

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def wait_until_answers(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the web server exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=5)
            conn.request("GET", parts.path)
            if conn.getresponse().status == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


# --- The benchmark ------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    var: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="portal-bench-")))
    env: dict[str, str] = field(default_factory=dict)
    # The two portal servers by name ("cached", "uncached"): processes and base URLs.
    webs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    bases: dict[str, str] = field(default_factory=dict)
    cache_seconds: int = 0  # OIDC_BEARER_CACHE_SECONDS of the "cached" server
    targets: list[Target] = field(default_factory=list)
    rss: dict[str, int] = field(default_factory=lambda: {"total": 0, "worker": 0})
    done: threading.Event = field(default_factory=threading.Event)
    provider_process: psutil.Process | None = None
    rss_worker_start: int = 0
    broker: subprocess.Popen[bytes] | None = None  # the embedded default's redis-server

    def web_processes(self, server: str = "cached") -> list[psutil.Process]:
        master = psutil.Process(self.webs[server].pid)
        return [master, *master.children(recursive=True)]

    def sample_rss(self) -> None:
        while not self.done.wait(0.1):
            try:
                procs = self.web_processes()
                rss = [proc.memory_info().rss for proc in procs]
            except psutil.Error:
                continue
            self.rss["total"] = max(self.rss["total"], sum(rss))
            self.rss["worker"] = max(self.rss["worker"], max(rss[1:], default=0))

    def setup(self, provider: OidcProvider) -> dict[str, Any]:
        """Database, users, tokens, the web servers, sessions; returns what is measured
        in this process (queries per request, the parts of the guard timed alone)."""
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": f"{self.args.server}/{DATABASE}",
            "PORTAL_VAR_DIR": str(self.var / "portal"),
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ACCESS_GROUP": "staff",
            # Thousands of requests a minute by each user: the guard is measured, not the
            # request rates' 429 (bench/web_reads.py measures the web with them on).
            "API_THROTTLE_USER": "off",
            "API_THROTTLE_ADDRESS": "off",
            **provider.portal_settings(),
        }
        for name in (
            "LOCAL_LOGIN",
            "OIDC_RENEW_SECONDS",
            "OIDC_BEARER_CACHE_SECONDS",
            "CELERY_BROKER_URL",
        ):
            # The defaults, here too: OIDC on, local sign-in off, the cache on.
            self.env.pop(name, None)
            os.environ.pop(name, None)
        self.start_embedded_cache()
        recreate_database(self.args.server)
        manage(self.env, "migrate", "--noinput")

        # This process reads the same database with the portal's settings: users, sessions
        # and the query counts come from here.
        os.environ.update(self.env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth.models import Group, User

        self.cache_seconds = settings.OIDC_BEARER_CACHE_SECONDS
        if not self.cache_seconds:
            raise RuntimeError("OIDC_BEARER_CACHE_SECONDS defaults to 0: nothing to compare")

        group, _ = Group.objects.get_or_create(name="staff")
        tokens = []
        for i in range(CLIENTS):
            # Members of the access group, not staff: the policy check asks the database.
            user = User.objects.create_user(username=f"bench-token-{i}")
            user.groups.add(group)
            tokens.append(manage(self.env, "issue_token", user.username, "--force").strip())
        password = secrets.token_urlsafe(16)
        access_tokens = []
        for i in range(CLIENTS):
            provider.add_user(f"bench-oidc-{i}", password, groups=["staff"], mfa=True)
            grant = provider.password_grant(f"bench-oidc-{i}", password)
            access_tokens.append(grant["access_token"])

        for server, cache_seconds in (("cached", None), ("uncached", "0")):
            env = dict(self.env)
            if cache_seconds is not None:
                env["OIDC_BEARER_CACHE_SECONDS"] = cache_seconds
            self.bases[server] = base = f"http://127.0.0.1:{free_port()}"
            command = [sys.executable, *WEB.format(address=base[7:]).split()]
            self.webs[server] = start(command, self.var / f"web-{server}.log", cwd=ROOT, env=env)
        for server, base in self.bases.items():
            wait_until_answers(f"{base}/login/", self.webs[server])
        threading.Thread(target=self.sample_rss, daemon=True).start()

        def bearer(raw: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {raw}"}

        cached, uncached = self.bases["cached"], self.bases["uncached"]
        oidc = [bearer(raw) for raw in access_tokens]
        oidc_uncached = Target(
            "oidc_uncached", "API, provider access token, not cached "
            "(`OIDC_BEARER_CACHE_SECONDS=0`)", uncached + API, oidc, server="uncached",
        )  # fmt: skip
        for i in range(CLIENTS):
            Client(oidc_uncached, i).get()  # the first call creates the identity's portal user
        cookies = self.browser_sessions()
        self.targets = [
            Target("token", "API, portal token (`jlp_…`)", cached + API,
                   [bearer(raw) for raw in tokens], server="cached"),
            Target("oidc_cached", f"API, provider access token, cached ({self.cache_seconds} s, "
                   "the default)", cached + API, oidc, server="cached"),
            oidc_uncached,
            Target("session", "API, browser session (second factor passed)", cached + API,
                   cookies, server="cached"),
            Target("page", "page `GET /terms/`, browser session", f"{cached}/terms/",
                   cookies, server="cached"),
            Target("login", "page `GET /login/`, anonymous (public: no guard)",
                   f"{cached}/login/", [{}], server="cached"),
            Target("userinfo", "the provider's userinfo alone, a new connection each time",
                   provider.userinfo_endpoint, oidc, fresh=True),
        ]  # fmt: skip
        for target in self.targets:
            for i in range(CLIENTS):
                Client(target, i).get()  # every credential works before anything is timed
        self.rss_worker_start = max(p.memory_info().rss for p in self.web_processes()[1:])
        me = psutil.Process()
        runservers = [p for p in me.children() if "runserver" in " ".join(p.cmdline())]
        self.provider_process = runservers[0] if runservers else None
        return {
            "queries": self.count_queries(),
            "parts": self.time_parts(tokens[0], access_tokens[0]),
        }

    def browser_sessions(self) -> list[dict[str, str]]:
        """Cookies of sessions as the provider's sign-in leaves them: its back-end, the second
        factor passed (the provider asserted it), an ID token that is still fresh."""
        from django.conf import settings
        from django.contrib.auth.models import User
        from django.test import Client as DjangoClient

        from accounts_app.second_factor import SESSION_KEY

        cookies = []
        for i in range(CLIENTS):
            client = DjangoClient()
            client.force_login(
                User.objects.get(username=f"bench-oidc-{i}"),
                backend="accounts_app.oidc.PortalOidcBackend",
            )
            session = client.session
            session[SESSION_KEY] = "provider"
            session["oidc_id_token_expiration"] = time.time() + SESSION_HOURS * 3600
            session.save()
            cookies.append({"Cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}"})
        return cookies

    def count_queries(self) -> dict[str, Any]:
        """SQL queries per request of each portal path, in this process (Django's client)."""
        from django.core.cache import cache
        from django.db import connection
        from django.test import Client as DjangoClient
        from django.test.utils import CaptureQueriesContext, override_settings

        counted: dict[str, Any] = {}
        for target in self.targets:
            if not target.server:
                continue  # the provider's
            path = urlsplit(target.url).path
            headers = {k.lower(): v for k, v in target.headers[0].items() if k != "Cookie"}
            client = DjangoClient(HTTP_HOST="127.0.0.1", headers=headers)
            if "Cookie" in target.headers[0]:
                name, value = target.headers[0]["Cookie"].split("=", 1)
                client.cookies[name] = value
            with contextlib.ExitStack() as stack:
                if target.server == "uncached":
                    # As the second server runs; and forget what the cached path remembered.
                    stack.enter_context(override_settings(OIDC_BEARER_CACHE_SECONDS=0))
                    cache.clear()
                # Uncounted; on the cached path a miss, which remembers the token.
                with CaptureQueriesContext(connection) as first:
                    client.get(path)
                counts, sqls = [], []
                for _ in range(QUERY_SAMPLES):
                    with CaptureQueriesContext(connection) as captured:
                        response = client.get(path)
                    if response.status_code != 200:
                        raise RuntimeError(f"{target.label} in-process: {response.status_code}")
                    counts.append(len(captured.captured_queries))
                    sqls = [query["sql"] for query in captured.captured_queries]
            mode = collections.Counter(counts).most_common(1)[0][0]
            counted[target.key] = {
                "counts": counts, "mode": mode, "sql": sqls, "first": len(first.captured_queries),
            }  # fmt: skip
        connection.close()
        return counted

    def time_parts(self, token: str, access_token: str) -> dict[str, Any]:
        """Seconds of the guard's parts, called as a request calls them: the portal token's
        look-up; the provider-token authentication when it remembers the token; on a miss the
        provider's userinfo, then ``user_for_claims``; the access policy with the suspension
        check. And the pages' re-check interval."""
        from unittest import mock

        from django.conf import settings
        from django.db import connection
        from django.test import RequestFactory
        from rest_framework.request import Request

        from accounts_app.api_auth import OidcBearerAuthentication
        from accounts_app.oidc import PortalOidcBackend, user_for_claims
        from accounts_app.policy import access_refusal
        from portal.tokens import token_resolve

        def resolve() -> Any:
            return token_resolve(token)

        request = Request(RequestFactory().get(API, HTTP_AUTHORIZATION=f"Bearer {access_token}"))

        def bearer_hit() -> Any:
            return OidcBearerAuthentication().authenticate(request)

        def userinfo() -> Any:
            return PortalOidcBackend().get_userinfo(access_token, None, None)

        user = resolve().user
        claims = userinfo()
        bearer_hit()  # a miss: asks the provider, then remembers the token
        parts = {
            "token_resolve": resolve,
            "bearer_hit": bearer_hit,
            "userinfo": userinfo,
            "user_for_claims": lambda: user_for_claims(claims),
            "access_refusal": lambda: access_refusal(user),
        }
        timings: dict[str, Any] = {}
        for name, call in parts.items():
            with contextlib.ExitStack() as stack:
                if name == "bearer_hit":  # every call must be a hit
                    stack.enter_context(mock.patch.object(
                        OidcBearerAuthentication, "_user_from_provider",
                        side_effect=RuntimeError("the cache did not remember the token"),
                    ))  # fmt: skip
                samples = []
                for i in range(BREAKDOWN_SAMPLES + 5):  # the first few uncounted
                    t0 = time.perf_counter()
                    call()
                    if i >= 5:
                        samples.append(time.perf_counter() - t0)
            timings[name] = samples
        connection.close()
        timings["renew_seconds"] = settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS
        return timings

    def sequential(self) -> dict[str, Any]:
        """Latency of requests one after another, the paths taking turns in blocks."""
        for target in self.targets:
            client = Client(target)
            for _ in range(WARMUP):
                client.get()
            client.close()
        times: dict[str, list[float]] = {t.key: [] for t in self.targets}
        cpu = dict.fromkeys(times, 0.0)
        provider_cpu = dict.fromkeys(times, 0.0)
        provider = [self.provider_process] if self.provider_process else []
        blocks = max(1, self.args.requests // BLOCK)
        for block in range(blocks):
            shift = block % len(self.targets)
            for target in self.targets[shift:] + self.targets[:shift]:
                client = Client(target)
                client.get()  # uncounted: opens the connection
                procs = self.web_processes(target.server or "cached")
                before, before_provider = cpu_seconds(procs), cpu_seconds(provider)
                times[target.key].extend(client.get() for _ in range(BLOCK))
                cpu[target.key] += cpu_seconds(procs) - before
                provider_cpu[target.key] += cpu_seconds(provider) - before_provider
                client.close()
            print(f"sequential block {block + 1}/{blocks}", flush=True)
        count = blocks * BLOCK
        return {
            "times": times,
            "cpu_per_request": {key: value / count for key, value in cpu.items()},
            "provider_cpu_per_request": {k: v / count for k, v in provider_cpu.items()},
        }

    def concurrent_round(self, target: Target) -> float:
        clients = [Client(target, i) for i in range(CLIENTS)]
        for client in clients:
            client.get()  # uncounted: opens the connections
        each = PER_ROUND // CLIENTS

        def run(client: Client) -> None:
            for _ in range(each):
                client.get()
            client.close()

        with ThreadPoolExecutor(CLIENTS) as pool:
            t0 = time.perf_counter()
            list(pool.map(run, clients))
            return each * CLIENTS / (time.perf_counter() - t0)

    def concurrent(self) -> dict[str, list[float]]:
        rates: dict[str, list[float]] = {t.key: [] for t in self.targets}
        for i in range(ROUNDS):
            shift = i % len(self.targets)
            for target in self.targets[shift:] + self.targets[:shift]:
                rates[target.key].append(self.concurrent_round(target))
            print(f"concurrent round {i + 1}/{ROUNDS}", flush=True)
        return rates

    def start_embedded_cache(self) -> None:
        """The embedded default's Redis (the shared cache and broker, on a Unix socket in
        var/, as runportal starts it): the token and bearer caches, the request rates."""
        socket_path = self.var / "portal" / "broker" / "redis.sock"
        socket_path.parent.mkdir(parents=True, mode=0o700)
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.broker = start(
            [server, "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "600",
             "--save", "", "--appendonly", "no", "--daemonize", "no"],
            self.var / "redis.log",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            if time.monotonic() > deadline or self.broker.poll() is not None:
                raise RuntimeError(f"redis-server did not start: see {self.var / 'redis.log'}")
            time.sleep(0.05)

    def cleanup(self) -> None:
        self.done.set()
        for web in self.webs.values():
            kill_group(web)
        if self.broker is not None:
            kill_group(self.broker)
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        with contextlib.suppress(Exception):
            recreate_database(self.args.server, drop_only=True)
        shutil.rmtree(self.var, ignore_errors=True)


# --- The report ---------------------------------------------------------------------------------


def machine(server: str) -> dict[str, Any]:
    return {
        **machine_basics(),
        "django": version("django"),
        "gunicorn": version("gunicorn"),
        "postgresql": postgresql_version(f"{server}/postgres"),
    }


def summarise(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    summary = {}
    for key, times in results["sequential"]["times"].items():
        summary[key] = {
            "median_ms": statistics.median(times) * 1000,
            "p90_ms": statistics.quantiles(times, n=10)[-1] * 1000,
            "rps": statistics.median(results["concurrent"][key]),
            "cpu_ms": results["sequential"]["cpu_per_request"][key] * 1000,
        }
    return summary


def ratio(value: float, base: float) -> str:
    return f"×{value / base:.2f}"


def report(results: dict[str, Any]) -> str:
    summary, queries = results["summary"], results["queries"]
    base = summary["token"]
    rows = []
    for target in results["targets"]:
        key, row = target["key"], summary[target["key"]]
        count = str(queries[key]["mode"]) if key in queries else "–"
        cpu = f"{row['cpu_ms']:.1f} ms" if key != "userinfo" else "–"
        rows.append(
            f"| {target['label']} | {row['median_ms']:.2f} ms | {row['p90_ms']:.2f} ms | "
            f"{ratio(row['median_ms'], base['median_ms'])} | {row['rps']:.0f} | "
            f"{ratio(row['rps'], base['rps'])} | {count} | {cpu} |"
        )
    cached, uncached = summary["oidc_cached"], summary["oidc_uncached"]
    session, page = summary["session"], summary["page"]
    nq = {key: value["mode"] for key, value in queries.items()}
    parts, seconds = results["parts"], results["cache_seconds"]
    ms = {name: statistics.median(parts[name]) * 1000 for name in PART_NAMES}
    notes = (
        f"With the cache (`OIDC_BEARER_CACHE_SECONDS`, {seconds} s by default) a provider "
        f"access token takes {cached['median_ms']:.2f} ms per request against a portal "
        f"token's {base['median_ms']:.2f} ms ({ratio(cached['median_ms'], base['median_ms'])}) "
        f"and serves {ratio(cached['rps'], base['rps'])} the requests/s with {CLIENTS} clients: "
        f"while the portal remembers whom the token is for, it neither calls the provider nor "
        f"rewrites the user, and loads only the user it remembered ({nq['oidc_cached']} "
        f"queries per request; a portal token: {nq['token']}); that authentication takes "
        f"{ms['bearer_hit']:.1f} ms, where resolving a portal token takes "
        f"{ms['token_resolve']:.1f} ms. Without it (`OIDC_BEARER_CACHE_SECONDS=0`, every "
        f"request asks the provider, as before the cache) the same request takes "
        f"{uncached['median_ms']:.2f} ms ({ratio(uncached['median_ms'], base['median_ms'])}, "
        f"{ratio(uncached['median_ms'], cached['median_ms'])} the cached path's) and serves "
        f"{ratio(uncached['rps'], base['rps'])} the requests/s "
        f"({ratio(uncached['rps'], cached['rps'])} the cached path's), with "
        f"{nq['oidc_uncached']} queries instead of {nq['oidc_cached']}: the userinfo call "
        f"as the portal makes it (`requests.get`, a new connection each time) takes "
        f"{ms['userinfo']:.1f} ms, and `user_for_claims`, which rewrites the identity row and "
        f"the group membership in a transaction, {ms['user_for_claims']:.1f} ms (medians of "
        f"{BREAKDOWN_SAMPLES}, timed in-process). That is also what the first request of a "
        f"token in each {seconds} s costs with the cache ({queries['oidc_cached']['first']} "
        f"queries on that miss), so the cache pays wherever a token is used more than once in "
        f"that time, as scripts and polling clients do. Its price: a token revoked at the "
        f"provider, or a person disabled or taken out of the access group there, keeps working "
        f"here for up to {seconds} s (the pages accept {parts['renew_seconds'] // 60} minutes "
        f"between re-checks, `OIDC_RENEW_SECONDS`). The access policy and suspensions are "
        f"still checked on every request, cached or not, as the portal's database has them: a "
        f"suspension made in the portal stops the very next request.\n\n"
        f"The rest of the guard is cheap: the access policy with the suspension check takes "
        f"{ms['access_refusal']:.1f} ms; a browser session costs "
        f"{ratio(session['median_ms'], base['median_ms'])} the portal token's time on the "
        f"API and {ratio(page['median_ms'], base['median_ms'])} on a page, and the unguarded "
        f"`/login/` (no query) is the floor at "
        f"{ratio(summary['login']['median_ms'], base['median_ms'])}."
    )
    rss = {f"rss_{k}": v / 2**20 for k, v in results["rss_peak"].items()}
    provider_cpu = results["sequential"]["provider_cpu_per_request"]
    fields = {
        **results,
        **results["machine"],
        **rss,
        "rss_worker_start": results["rss_worker_start"] / 2**20,
        "provider_cpu_cached": provider_cpu["oidc_cached"] * 1000,
        "provider_cpu_uncached": provider_cpu["oidc_uncached"] * 1000,
        "rows": "\n".join(rows),
        "notes": notes,
        "api": API,
        "clients": CLIENTS,
        "block": BLOCK,
        "warmup": WARMUP,
        "per_round": PER_ROUND,
        "rounds": ROUNDS,
        "query_samples": QUERY_SAMPLES,
    }
    return REPORT.format_map(fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="sequential, per path (500)")
    parser.add_argument(
        "--server", default=SERVER, help=f"PostgreSQL server, without a database ({SERVER})"
    )
    add_output_arguments(parser)
    args = parser.parse_args()
    args.server = args.server.rstrip("/")
    stop_on_signals()
    sys.path.insert(0, str(ROOT))
    from tests.idp.provider import running_provider

    bench, load_before = Bench(args), os.getloadavg()[0]
    try:
        (bench.var / "idp").mkdir()
        with running_provider(bench.var / "idp") as provider:
            in_process = bench.setup(provider)
            print("queries per request:", {k: v["mode"] for k, v in in_process["queries"].items()})
            sequential = bench.sequential()
            concurrent = bench.concurrent()
    except BaseException:
        for server in bench.webs:
            with contextlib.suppress(OSError):
                tail = (bench.var / f"web-{server}.log").read_text()[-3000:]
                print(f"--- the end of the {server} web server's log ---\n{tail}", file=sys.stderr)
        raise
    finally:
        bench.cleanup()
    now = datetime.now(UTC)
    results: dict[str, Any] = {
        "date": f"{now:%Y-%m-%d %H:%M} UTC",
        "command": command_line(),
        "machine": machine(args.server),
        "load_before": load_before,
        "requests": max(1, args.requests // BLOCK) * BLOCK,
        "targets": [{"key": t.key, "label": t.label} for t in bench.targets],
        "cache_seconds": bench.cache_seconds,
        **in_process,
        "sequential": sequential,
        "concurrent": concurrent,
        "rss_peak": dict(bench.rss),
        "rss_worker_start": bench.rss_worker_start,
    }
    results["summary"] = summarise(results)
    publish(args, "Access guard", report(results), "access", now, results)


if __name__ == "__main__":
    main()
