"""Launch benchmark: the portal's launch-to-ready time against bare JupyterLab start-ups.

Starts the portal (gunicorn as ``make run`` does, and one Celery worker, on PostgreSQL and
Redis) and times, in one run, for one user and for several users at once:

- bare: ``jupyter-lab`` started as the local spawner starts it, until its ``lab?token=`` URL
  answers 200;
- portal: from ``POST /api/v1/session/`` until the URL the API returns answers 200.

It writes the "Launch" section of ``docs/benchmarks.md`` and raw JSON under ``bench/results/``.
Usage: ``.venv/bin/python bench/launch.py [--rounds 7] [--users 10] [--skip-ten]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psutil
import psycopg
import redis
import requests
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
    spread,
    start,
    stop_on_signals,
)

BIN = Path(sys.executable).parent
DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/portal_bench",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/14",
}
# The web server as `make run` starts it (portal/management/commands/runportal.py).
WEB = (
    "-m gunicorn portal.wsgi:application --bind {address} --worker-class gthread --workers 2 "
    "--threads 16 --no-control-socket"
)
WORKER = "-m celery -A portal worker --pool threads --concurrency 16 -Q celery -l INFO"
WAIT = 30  # seconds: GET /api/v1/session/?wait=…, the API's long poll
POLL = 0.02  # seconds between readiness polls of JupyterLab, the same for bare and portal
TIMEOUT = 180.0  # the most one launch may take, also many at once on a small machine
TEN_REPEATS = 3
TARGET_ADDED, TARGET_RATIO = 0.3, 1.1
# What the local spawner passes on to a server from its own environment (spawners/local.py).
INHERITED_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "SHELL")
ABORT = threading.Event()
SETUP = """
import json
from django.contrib.auth import get_user_model
from portal.tokens import token_issue
from sessions_app.models import Session
from sessions_app.services import session_finish_stop, session_request_stop

tokens = {}
for name in NAMES:
    user, _ = get_user_model().objects.update_or_create(username=name, defaults={"is_staff": True})
    # A session left active by an interrupted run would be returned instead of a new launch.
    active = Session.objects.filter(user=user, state__in=Session.ACTIVE_STATES)
    for pk in active.values_list("pk", flat=True):
        session_request_stop(str(pk), Session.Reason.STAFF_STOPPED)
        session_finish_stop(str(pk))
    tokens[name] = token_issue(user=user, name="launch benchmark")
print(json.dumps(tokens))
"""
REPORT = """## Launch

Measured {date} with `{command}` on {nproc} CPUs ({cpu}), {ram_gib} GiB RAM, Linux {kernel},
Python {python}, JupyterLab {jupyterlab}, PostgreSQL {postgresql}, Redis {redis}; load average
{load_before:.2f} (1 min) before the run (other work on the machine makes the figures noisy).

| launch to ready | bare JupyterLab | portal | portal vs bare | target | JupyterHub 6.1, local spawner (for scale) |
| --- | --- | --- | --- | --- | --- |
{rows}

One portal launch, medians from the POST: the POST answered after {posted:.3f} s, `GET
/api/v1/session/` showed the URL after {running:.2f} s, JupyterLab answered after {ready:.2f} s.

Peak resident memory of the portal during the run: web {web:.0f} MB, worker {worker:.0f} MB,
together {total:.0f} MB (gunicorn: master and 2 processes × 16 threads; one Celery worker with
16 threads; without the JupyterLab servers). CPU the portal used during a several-user launch
round, median: web {cpu_web:.2f} s, worker {cpu_worker:.2f} s.

*Bare*: `jupyter-lab` started with the local spawner's flags, environment and limits, timed until
`lab?token=…` answers 200. *Portal*: from `POST /api/v1/session/` until the `url` that `GET
/api/v1/session/?wait=30` (the API's long poll) returns answers 200. JupyterLab is polled every
{poll:.0f} ms (a TCP connect, then the HTTP request). One-user rounds
alternate bare and portal (and which goes first) after one uncounted warm-up of each; the
several-user rows start all launches at once (threads) and stop none before the last answers.
Raw figures: `bench/results/` (not in git).
"""  # noqa: E501 (a Markdown table row is one line)


def http_client(token: str = "") -> requests.Session:
    client = requests.Session()
    client.trust_env = False  # no proxy from the environment between us and 127.0.0.1
    if token:
        client.headers["Authorization"] = f"Bearer {token}"
    return client


def answers(client: requests.Session, url: str) -> bool:
    # A bare connect first: a refused connection through requests costs ~1 ms of CPU, which
    # ten pollers at 50 Hz would take from the servers that they wait for.
    parts = urlsplit(url)
    with socket.socket() as sock:
        if sock.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)):
            return False
    try:
        return client.get(url, timeout=5, allow_redirects=False).status_code == 200
    except requests.RequestException:
        return False


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout: float = TIMEOUT,
    abortable: bool = True,
    interval: float = POLL,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if abortable and ABORT.is_set():
            raise RuntimeError(f"{what}: aborted")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def ensure_database(url: str) -> None:
    parts = urlsplit(url)
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        name = parts.path.lstrip("/")
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.var = Path(tempfile.mkdtemp(prefix="portal-bench-")).resolve()
        self.env = {**DEFAULTS, **os.environ, "PORTAL_VAR_DIR": str(self.var)}
        self.env["LOCAL_SPAWNER_RUNTIME_DIR"] = str(self.var / "spawner")
        self.env["STORAGE_HOME_ROOT"] = str(self.var / "home")
        self.names = [f"bench{i}" for i in range(max(args.users, 1))]
        self.children: list[subprocess.Popen[bytes]] = []
        self.bare: set[subprocess.Popen[bytes]] = set()
        self.clients: dict[str, requests.Session] = {}
        self.base = ""
        self.rss = {"web": 0, "worker": 0, "total": 0}
        # CPU seconds web and worker used during each several-user portal round.
        self.cpu: list[dict[str, float]] = []
        self.done = threading.Event()

    def api(self, path: str) -> str:
        return f"{self.base}/api/v1/{path}"

    def setup(self) -> None:
        ensure_database(self.env["DATABASE_URL"])
        manage(self.env, "migrate", "--noinput")
        out = manage(self.env, "shell", "-c", f"NAMES = {self.names!r}\n{SETUP}")
        tokens = json.loads(out.strip().splitlines()[-1])
        if "CELERY_BROKER_URL" not in os.environ:
            # Only the bench's own Redis database: tasks left there by an interrupted run.
            redis.Redis.from_url(DEFAULTS["CELERY_BROKER_URL"]).flushdb()
        self.base = f"http://127.0.0.1:{free_port()}"
        for name, args in (("web", WEB.format(address=self.base[7:])), ("worker", WORKER)):
            command = [sys.executable, *args.split()]
            self.children.append(start(command, self.var / f"{name}.log", cwd=ROOT, env=self.env))
        self.web, self.worker = self.children
        self.clients = {name: http_client(token) for name, token in tokens.items()}
        first = self.clients[self.names[0]]
        wait_until(lambda: answers(first, self.api("terms/current/")), "web server", 60)
        log = self.var / "worker.log"
        wait_until(lambda: " ready." in log.read_text(errors="replace"), "Celery worker", 60)
        for client in self.clients.values():
            terms = client.get(self.api("terms/current/"), timeout=10).json()
            if not terms["accepted"]:
                accept = client.post(self.api("terms/accept/"), json={"version": terms["version"]})
                accept.raise_for_status()
        environment = first.get(self.api("environments/"), timeout=10).json()[0]
        self.environment = environment["slug"]
        self.memory_mb, self.cpus = environment["memory_mb"], environment["cpus"]
        threading.Thread(target=self.sample_rss, daemon=True).start()

    def portal_processes(self) -> dict[str, list[psutil.Process]]:
        # gunicorn's master and its workers; the Celery worker alone, not the JupyterLab
        # servers it started (they are its children too).
        web = psutil.Process(self.web.pid)
        return {
            "web": [web, *web.children(recursive=True)],
            "worker": [psutil.Process(self.worker.pid)],
        }

    def portal_cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) the web and worker processes have used so far."""
        return {
            name: sum(sum(p.cpu_times()[:2]) for p in procs)
            for name, procs in self.portal_processes().items()
        }

    def sample_rss(self) -> None:
        while not self.done.wait(0.1):
            try:
                rss = {
                    name: sum(p.memory_info().rss for p in procs)
                    for name, procs in self.portal_processes().items()
                }
            except psutil.Error:
                continue
            for name, value in [*rss.items(), ("total", sum(rss.values()))]:
                self.rss[name] = max(self.rss[name], value)

    def limits(self, port: int) -> Callable[[], None]:
        # The environment's limits, set as the local spawner sets them (RLIMIT_AS, affinity).
        memory = self.memory_mb * 2**20
        available = sorted(os.sched_getaffinity(0))
        count = max(1, min(self.cpus, len(available)))
        cpus = {available[(port + i) % len(available)] for i in range(count)}

        def apply() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            os.sched_setaffinity(0, cpus)

        return apply

    def bare_one(self, name: str, t0: float) -> float:
        home = self.var / "bare-home" / name
        home.mkdir(parents=True, exist_ok=True)
        port, token, base_url = free_port(), secrets.token_urlsafe(32), f"/user/{quote(name)}/"
        command = [str(BIN / "jupyter-lab"), "--no-browser", "--ServerApp.ip=127.0.0.1",
                   f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                   f"--ServerApp.base_url={base_url}", f"--ServerApp.root_dir={home}"]  # fmt: skip
        if os.geteuid() == 0:
            command.append("--ServerApp.allow_root=True")
        env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
        env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', os.defpath)}", HOME=str(home))
        env["JUPYTER_TOKEN"] = token
        env["MALLOC_ARENA_MAX"] = "2"  # as the local spawner sets it
        log = home.parent / f"{name}.log"
        self.bare.add(start(command, log, cwd=home, env=env, preexec_fn=self.limits(port)))
        client, url = http_client(), f"http://127.0.0.1:{port}{base_url}lab?token={token}"
        wait_until(lambda: answers(client, url), f"bare JupyterLab of {name}")
        return time.perf_counter() - t0

    def portal_one(self, name: str, t0: float) -> dict[str, float]:
        client = self.clients[name]
        launch = client.post(self.api("session/"), json={"environment": self.environment})
        if launch.status_code != 201:
            raise RuntimeError(f"launch for {name}: {launch.status_code} {launch.text}")
        posted, url = time.perf_counter() - t0, ""

        def running() -> bool:
            nonlocal url
            # A long poll: the API answers once the session runs (or ended), so the client
            # needs no tight polling loop of its own.
            session = client.get(self.api(f"session/?wait={WAIT}"), timeout=WAIT + 10)
            if session.status_code == 404:  # ended already: say how
                last = client.get(self.api("sessions/"), timeout=10).json()["results"][0]
                raise RuntimeError(f"launch for {name} ended: {last['reason']}: {last['message']}")
            url = session.json()["url"] or ""
            return bool(url)

        wait_until(running, f"portal session of {name}", interval=self.args.api_poll)
        running_after, lab = time.perf_counter() - t0, http_client()
        wait_until(lambda: answers(lab, url), f"portal JupyterLab of {name}")
        return {"posted": posted, "running": running_after, "ready": time.perf_counter() - t0}

    def gone(self, name: str) -> bool:
        return self.clients[name].get(self.api("session/"), timeout=10).status_code == 404

    def stop_sessions(self, names: list[str], timeout: float = 60) -> None:
        for name in names:
            self.clients[name].delete(self.api("session/"), timeout=10)
        for name in names:
            check = functools.partial(self.gone, name)
            wait_until(check, f"stop of {name}'s session", timeout, abortable=False)

    def stop_bare(self) -> None:
        for proc in self.bare:  # all at once, then wait for each
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        while self.bare:
            kill_group(self.bare.pop(), 5)

    def round(self, kind: str, names: list[str]) -> list[Any]:
        """Launch for every name at once; each result is measured from one common start."""
        one = self.bare_one if kind == "bare" else self.portal_one
        pool = ThreadPoolExecutor(len(names))
        cpu_before = self.portal_cpu()
        t0 = time.perf_counter()
        try:
            results = list(pool.map(one, names, [t0] * len(names)))
            if kind == "portal" and len(names) > 1:
                after = self.portal_cpu()
                self.cpu.append({name: after[name] - cpu_before[name] for name in after})
            return results
        except BaseException:
            ABORT.set()  # the other launches of the round give up instead of running on
            raise
        finally:
            pool.shutdown()
            # Only now, so that no server has the machine to itself while others still start.
            if kind == "bare":
                self.stop_bare()
            else:
                self.stop_sessions(names)

    def run(self) -> dict[str, Any]:
        one, bare, portal, ten = self.names[:1], list[float](), list[dict[str, float]](), []
        print("warm-up (not counted)", flush=True)
        self.round("bare", one)
        self.round("portal", one)
        for i in range(self.args.rounds):
            # Which goes first alternates, so that a drifting machine hits both alike.
            for kind in ("bare", "portal") if i % 2 == 0 else ("portal", "bare"):
                (bare if kind == "bare" else portal).extend(self.round(kind, one))
            print(f"1 user, round {i + 1}: bare {bare[-1]:.2f} s, "
                  f"portal {portal[-1]['ready']:.2f} s", flush=True)  # fmt: skip
        for i in range(0 if self.args.skip_ten else TEN_REPEATS):
            order = ("bare", "portal") if i % 2 == 0 else ("portal", "bare")
            runs = {kind: self.round(kind, self.names) for kind in order}
            last = {"bare_last": max(runs["bare"]),
                    "portal_last": max(r["ready"] for r in runs["portal"])}  # fmt: skip
            ten.append({**runs, **last, "ratio": last["portal_last"] / last["bare_last"]})
            print(f"{len(self.names)} users, run {i + 1}: bare {last['bare_last']:.2f} s, "
                  f"portal {last['portal_last']:.2f} s, ratio {ten[-1]['ratio']:.2f}",
                  flush=True)  # fmt: skip
        return {
            "bare": bare,
            "portal": portal,
            "ten": ten,
            "rss_peak": dict(self.rss),
            "cpu_ten": self.cpu,
        }

    def cleanup(self) -> None:
        ABORT.set()
        self.done.set()
        self.stop_bare()
        if len(self.children) == 2 and all(proc.poll() is None for proc in self.children):
            with contextlib.suppress(Exception):
                self.stop_sessions(self.names, timeout=30)
        for proc in reversed(self.children):
            kill_group(proc)
        # Backstop for servers whose stop was lost: the spawner marks them with its runtime dir.
        runtime = str(self.var / "spawner")
        for server in psutil.process_iter(["environ"]):
            if (server.info["environ"] or {}).get("JUPYTER_PORTAL_RUNTIME_DIR") == runtime:
                with contextlib.suppress(psutil.Error):
                    server.kill()
        shutil.rmtree(self.var, ignore_errors=True)


def machine(env: dict[str, str]) -> dict[str, Any]:
    return {
        **machine_basics(),
        "jupyterlab": version("jupyterlab"),
        "postgresql": postgresql_version(env["DATABASE_URL"]),
        "redis": redis.Redis.from_url(env["CELERY_BROKER_URL"]).info()["redis_version"],
    }


def report(results: dict[str, Any]) -> str:
    bare, portal, ten = results["bare"], results["portal"], results["ten"]
    added = statistics.median(r["ready"] for r in portal) - statistics.median(bare)
    verdict = {True: "met", False: "**missed**"}
    rows = [
        f"| one user, median (min–max) of {len(bare)} | {spread(bare)} | "
        f"{spread([r['ready'] for r in portal])} | {added:+.2f} s | "
        f"≤ +{TARGET_ADDED} s: {verdict[added <= TARGET_ADDED]} | +1.8 s (bare 1.9 s) |"
    ]
    if ten:
        ratio = statistics.median(r["ratio"] for r in ten)
        rows.append(
            f"| {results['users']} users at once, until the last answers, median (min–max) of "
            f"{len(ten)} | {spread([r['bare_last'] for r in ten])} | "
            f"{spread([r['portal_last'] for r in ten])} | ×{ratio:.2f} | "
            f"≤ ×{TARGET_RATIO}: {verdict[ratio <= TARGET_RATIO]} | ×1.6 |"
        )
    steps = {key: statistics.median(r[key] for r in portal) for key in portal[0]}
    rss = {key: value / 2**20 for key, value in results["rss_peak"].items()}
    fields = {**results, **results["machine"], **steps, **rss, "rows": "\n".join(rows)}
    fields.update(poll=POLL * 1000, api_poll=results["api_poll"] * 1000)
    cpu = results["cpu_ten"] or [{"web": float("nan"), "worker": float("nan")}]
    fields.update({f"cpu_{name}": statistics.median(r[name] for r in cpu) for name in cpu[0]})
    return REPORT.format_map(fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="one-user rounds of each (7)")
    parser.add_argument("--users", type=int, default=10, help="users launching at once (10)")
    parser.add_argument("--skip-ten", action="store_true", help="only the one-user rounds")
    add_output_arguments(parser)
    parser.add_argument(
        "--api-poll", type=float, default=POLL, help="seconds between GET /api/v1/session/"
    )
    args = parser.parse_args()
    stop_on_signals()
    bench, load_before = Bench(args), os.getloadavg()[0]
    try:
        bench.setup()
        results = bench.run()
    except BaseException:
        for name in ("web", "worker"):
            with contextlib.suppress(OSError):
                tail = (bench.var / f"{name}.log").read_text()[-3000:]
                print(f"--- the end of the {name} log ---\n{tail}", file=sys.stderr)
        raise
    finally:
        bench.cleanup()
    now = datetime.now(UTC)
    # The portal's tuning variables change the figures: name those that were set.
    tuning = ("SPAWN_", "SESSION_", "LOCAL_SPAWNER_")
    settings = "".join(
        f"{key}={shlex.quote(value)} "
        for key, value in os.environ.items()
        if key.startswith(tuning)
    )
    results.update(
        date=f"{now:%Y-%m-%d %H:%M} UTC",
        command=command_line(settings),
        machine=machine(bench.env),
        users=len(bench.names),
        load_before=load_before,
        api_poll=args.api_poll,
    )
    publish(args, "Launch", report(results), "launch", now, results)


if __name__ == "__main__":
    main()
