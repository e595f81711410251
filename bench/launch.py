"""Launch benchmark: the portal's launch-to-usable time against bare JupyterLab start-ups.

Starts the portal as ``make run`` does: ``manage.py runportal`` (nginx as the router on the
portal's one address, gunicorn behind it on a Unix socket, a Celery worker and beat), on a
temporary ``PORTAL_VAR_DIR``, with PostgreSQL and Redis of the machine. As root its sessions run
in multi-user mode (an OS account per person, a bubblewrap sandbox, a cgroup per session); the
report says which mode ran. It times, for one user and for several users at once:

- bare: ``jupyter-lab`` started directly (no portal, sandbox or limits) on a TCP port, until
  its ``lab?token=`` URL answers 200; and the same on a Unix socket with the spawner's own
  server flags, until ``lab`` answers 200 to ``Authorization: token …`` on the socket;
- portal: from ``POST /api/v1/session/`` until the URL the API returns
  (``<portal>/user/<name>/lab``, no token in it) answers 200 through nginx to the client's
  ``Authorization: Bearer <portal token>`` (nginx asks the forward-auth, adds the Jupyter token).

The sessions' capacity pool is set to fit every launch at once: the benchmark measures launch
latency, not admission. It writes the "Launch" section of ``docs/benchmarks.md`` and raw JSON
under ``bench/results/``.
Usage: ``.venv/bin/python bench/launch.py [--rounds 7] [--users 10] [--skip-ten] [--port N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import redis
import requests

# isort: split
# The scripts' shared helpers, bench/common.py (bench/ is on sys.path: the script's folder).
from common import (
    ROOT,
    add_output_arguments,
    command_line,
    free_port,
    kill_group,
    manage,
    print_portal_logs,
    publish,
    start,
    stop_on_signals,
)
from launch_probes import (
    answers,
    ensure_database,
    http_client,
    machine_busy,
    own_cpu,
    port_free,
    sessions_cpu,
    tree_cpu,
    unix_answers,
)
from launch_report import machine, report

from sessions_app.spawners import software  # noqa: E402

# (launch_probes put the portal on sys.path.) The spawner's own server flags: the Unix-socket
# bare run starts the same server the portal starts, without the portal, sandbox and cgroup.
from sessions_app.spawners.jupyter_args import server_args  # noqa: E402
from sessions_app.spawners.local import LocalProcessSpawner  # noqa: E402

# The bare servers run the sessions' own software (what the portal's sessions run), not the
# portal's virtual environment.
BIN = software.session_software(
    Path(os.environ.get("LOCAL_SESSION_ENV") or ROOT / ".session-env")
).bin
DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/portal_bench",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/10",
}
# The portal's address: a fixed port, outside the kernel's ephemeral range (32768-60999), where
# the bare servers' TCP ports come from.
PORT = 18475
KINDS = ("bare", "bare_unix", "portal")
WAIT = 30  # seconds: GET /api/v1/session/?wait=…, the API's long poll
POLL = 0.02  # seconds between readiness polls of JupyterLab, the same for bare and portal
TIMEOUT = 180.0  # the most one launch may take, also many at once on a small machine
TEN_REPEATS = 3
# What the local spawner passes on to a server from its own environment (spawners/local.py).
INHERITED_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "SHELL")
ABORT = threading.Event()
SETUP = """
import json
from django.conf import settings
from django.contrib.auth import get_user_model
from portal.tokens import token_issue
from sessions_app.models import Environment, Session
from sessions_app.services import session_finish_stop, session_request_stop
from sessions_app.spawners.isolation import isolation_status

tokens = {}
for name in NAMES:
    user, _ = get_user_model().objects.update_or_create(username=name, defaults={"is_staff": True})
    # A session left active by an interrupted run would be returned instead of a new launch.
    active = Session.objects.filter(user=user, state__in=Session.ACTIVE_STATES)
    for pk in active.values_list("pk", flat=True):
        session_request_stop(str(pk), Session.Reason.STAFF_STOPPED)
        session_finish_stop(str(pk))
    tokens[name] = token_issue(user=user, name="launch benchmark")
sizes = Environment.objects.filter(enabled=True).values_list("cpus", "memory_mb")
print(json.dumps({
    "tokens": tokens,
    "cpus": max(c for c, _ in sizes),
    "memory_mb": max(m for _, m in sizes),
    "runtime_dir": str(settings.LOCAL_SPAWNER_RUNTIME_DIR),
    "socket_dir": str(settings.LOCAL_SPAWNER_SOCKET_DIR),
    "router_run_dir": str(settings.LOCAL_ROUTER_RUN_DIR),
    "isolation": isolation_status(check_filter=False),
}))
"""


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


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # Short: the sessions' and bare servers' socket paths must stay under 108 bytes.
        self.var = Path(tempfile.mkdtemp(prefix="jlp-lb-", dir="/tmp")).resolve()
        self.env = {**DEFAULTS, **os.environ, "PORTAL_VAR_DIR": str(self.var)}
        # runportal puts session URLs on its own address unless told otherwise.
        for name in ("PORTAL_PUBLIC_URL", "PORTAL_HOST", "PORTAL_PORT"):
            self.env.pop(name, None)
        self.names = [f"bench{i}" for i in range(max(args.users, 1))]
        self.portal: subprocess.Popen[bytes] | None = None
        self.bare: set[subprocess.Popen[bytes]] = set()
        self.clients: dict[str, requests.Session] = {}
        self.base = f"http://127.0.0.1:{args.port}"
        self.facts: dict[str, Any] = {}
        self.observed: dict[str, Any] = {}
        self.rss = {key: 0 for key in ("web", "worker", "router", "other", "total")}
        # CPU seconds web, worker and router used during each several-user portal round.
        self.cpu: list[dict[str, float]] = []
        # Where the machine's CPU went during each several-user round (see ``round``).
        self.machine_cpu: list[dict[str, Any]] = []
        self.done = threading.Event()

    def api(self, path: str) -> str:
        return f"{self.base}/api/v1/{path}"

    def setup(self) -> None:
        if not port_free(self.args.port):
            raise RuntimeError(f"port {self.args.port} is taken: choose another with --port")
        ensure_database(self.env["DATABASE_URL"])
        manage(self.env, "migrate", "--noinput")
        out = manage(self.env, "shell", "-c", f"NAMES = {self.names!r}\n{SETUP}")
        self.facts = json.loads(out.strip().splitlines()[-1])
        if "CELERY_BROKER_URL" not in os.environ:
            # Only the bench's own Redis database: tasks left there by an interrupted run.
            redis.Redis.from_url(DEFAULTS["CELERY_BROKER_URL"]).flushdb()
        # Room for every launch at once (one session per user): the queue is not measured.
        users, facts = len(self.names), self.facts
        pool = {
            "SESSION_POOL_CPUS": users * facts["cpus"],
            "SESSION_POOL_MEMORY_MB": users * facts["memory_mb"],
        }
        for name, value in pool.items():
            self.env.setdefault(name, str(value))
            if int(self.env[name]) < value:
                print(f"warning: {name}={self.env[name]} queues some of {users} launches")
        facts["pool_source"] = (
            "set by the environment"
            if any(name in os.environ for name in pool)
            else f"set by the benchmark: {users} users × the largest environment"
        )
        print(
            f"Sessions' pool for this run: SESSION_POOL_CPUS={self.env['SESSION_POOL_CPUS']}, "
            f"SESSION_POOL_MEMORY_MB={self.env['SESSION_POOL_MEMORY_MB']} "
            f"({facts['pool_source']}); isolation: {facts['isolation']['summary']}",
            flush=True,
        )
        command = [sys.executable, "manage.py", "runportal", "--host", "127.0.0.1",
                   "--port", str(self.args.port)]  # fmt: skip
        self.portal = start(command, self.var / "runportal.log", cwd=ROOT, env=self.env)
        self.clients = {name: http_client(token) for name, token in facts["tokens"].items()}
        first = self.clients[self.names[0]]
        # Through nginx: the router and the web behind it both answer.
        wait_until(lambda: answers(first, self.api("terms/current/")), "portal (router)", 90)
        # The workers log to var/log/ (runportal keeps its terminal for the banner).
        log = self.var / "log" / "worker-spawn.log"
        wait_until(
            lambda: log.exists() and " ready." in log.read_text(errors="replace"),
            "Celery worker",
            90,
        )
        for client in self.clients.values():
            terms = client.get(self.api("terms/current/"), timeout=10).json()
            if not terms["accepted"]:
                accept = client.post(self.api("terms/accept/"), json={"version": terms["version"]})
                accept.raise_for_status()
        listing = first.get(self.api("environments/"), timeout=10)
        if listing.status_code != 200:
            raise RuntimeError(f"GET environments/: {listing.status_code} {listing.text[:300]}")
        environment = listing.json()[0]
        self.environment = environment["slug"]
        self.memory_mb, self.cpus = environment["memory_mb"], environment["cpus"]
        threading.Thread(target=self.sample_rss, daemon=True).start()

    def portal_processes(self) -> dict[str, list[psutil.Process]]:
        """runportal's children by role: gunicorn's master and workers, nginx's master and
        workers, the Celery worker alone (not the sessions it started), the rest."""
        assert self.portal is not None
        supervisor = psutil.Process(self.portal.pid)
        found: dict[str, list[psutil.Process]] = {"web": [], "worker": [], "router": []}
        found["other"] = [supervisor]
        for child in supervisor.children():
            line = " ".join(child.cmdline())
            if "gunicorn" in line:
                found["web"] += [child, *child.children(recursive=True)]
            elif "nginx" in line:
                found["router"] += [child, *child.children(recursive=True)]
            elif "celery" in line and " worker" in line:
                found["worker"].append(child)
            else:
                found["other"].append(child)
        return found

    def portal_cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) the web, worker and router have used so far."""
        return {
            name: sum(sum(p.cpu_times()[:2]) for p in procs)
            for name, procs in self.portal_processes().items()
            if name != "other"
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

    def bare_start(self, name: str, command: list[str]) -> tuple[Path, str]:
        """Start a bare server for ``name`` in its own home; returns (home, token)."""
        home = self.var / "bare-home" / name
        home.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
        env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', os.defpath)}", HOME=str(home))
        env["JUPYTER_TOKEN"] = token  # as the spawner passes it: not on the command line
        self.bare.add(start(command, home.parent / f"{name}.log", cwd=home, env=env))
        return home, token

    def bare_one(self, name: str, t0: float) -> float:
        port, base_url = free_port(), f"/user/{quote(name)}/"
        home = self.var / "bare-home" / name
        command = [str(BIN / "jupyter-lab"), "--no-browser", "--ServerApp.ip=127.0.0.1",
                   f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                   f"--ServerApp.base_url={base_url}", f"--ServerApp.root_dir={home}"]  # fmt: skip
        if os.geteuid() == 0:
            command.append("--ServerApp.allow_root=True")
        _, token = self.bare_start(name, command)
        client, url = http_client(), f"http://127.0.0.1:{port}{base_url}lab?token={token}"
        wait_until(lambda: answers(client, url), f"bare JupyterLab of {name}")
        return time.perf_counter() - t0

    def bare_unix_one(self, name: str, t0: float) -> float:
        base_url = f"/user/{quote(name)}/"
        folder = self.var / "bare-sock" / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "jupyter.sock"
        path.unlink(missing_ok=True)
        home = self.var / "bare-home" / name
        command = [str(BIN / "jupyter-lab"), *server_args(path, base_url, home, None)]
        _, token = self.bare_start(name, command)
        url = f"{base_url}lab"
        wait_until(lambda: unix_answers(str(path), url, token), f"bare JupyterLab of {name}")
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
        running_after = time.perf_counter() - t0
        if "token=" in url:
            raise RuntimeError(f"the session URL carries a token: {url}")
        # The portal token, as a REST client sends it: nginx swaps it for the server's.
        wait_until(lambda: answers(client, url), f"portal JupyterLab of {name}")
        ready = time.perf_counter() - t0
        if not self.observed:
            self.observe()
        return {"posted": posted, "running": running_after, "ready": ready}

    def observe(self) -> None:
        """What a running session really got: its server's uid, the sandbox, the cgroup."""
        folder = Path(self.facts["runtime_dir"]) / "sessions"
        for path in folder.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, psutil.Error):
                state = json.loads(path.read_text())
                leader = psutil.Process(int(state["pid"]))
                servers = [
                    p
                    for p in [leader, *leader.children(recursive=True)]
                    # The server itself, not bwrap, whose arguments name it too.
                    if p.name() != "bwrap" and any("jupyter-lab" in a for a in p.cmdline()[:2])
                ]
                self.observed = {
                    "leader": Path(leader.cmdline()[0]).name,
                    "server_uid": servers[0].uids().real if servers else None,
                    "server_user": servers[0].username() if servers else None,
                    "cgroup": state.get("cgroup", ""),
                    "socket": state.get("socket", ""),
                }
                return

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
        one = {"bare": self.bare_one, "bare_unix": self.bare_unix_one}.get(kind, self.portal_one)
        pool = ThreadPoolExecutor(len(names))
        cpu_before = self.portal_cpu()
        before = {"machine": machine_busy(), "client": own_cpu()}
        t0 = time.perf_counter()
        try:
            results = list(pool.map(one, names, [t0] * len(names)))
            if len(names) > 1:
                self.account(kind, time.perf_counter() - t0, before, cpu_before)
            return results
        except BaseException:
            ABORT.set()  # the other launches of the round give up instead of running on
            raise
        finally:
            pool.shutdown()
            # Only now, so that no server has the machine to itself while others still start.
            if kind == "portal":
                self.stop_sessions(names)
            else:
                self.stop_bare()

    def account(
        self, kind: str, wall: float, before: dict[str, float], portal_before: dict[str, float]
    ) -> None:
        """Where the machine's CPU went during a several-user round, until the last server
        answered: the servers, the portal's processes, this client, and the rest (PostgreSQL,
        Redis, the kernel, other work on the machine)."""
        portal_after = self.portal_cpu()
        portal = {name: portal_after[name] - portal_before[name] for name in portal_after}
        if kind == "portal":
            self.cpu.append(portal)
            # The round's sessions run (none is stopped yet): their cgroups count since start.
            folder = Path(self.facts["runtime_dir"]) / "sessions"
            servers = sessions_cpu([path.stem for path in folder.glob("*.json")])
        else:  # the bare servers, still running: their own counts
            servers = tree_cpu([psutil.Process(proc.pid) for proc in self.bare])
        used = {
            "machine": machine_busy() - before["machine"],
            "servers": servers,
            "portal": sum(portal.values()),
            "client": own_cpu() - before["client"],
        }
        rest = used["machine"] - used["servers"] - used["portal"] - used["client"]
        self.machine_cpu.append({"kind": kind, "wall": wall, **used, "rest": rest})

    def run(self) -> dict[str, Any]:
        one = self.names[:1]
        results: dict[str, list[Any]] = {kind: [] for kind in KINDS}
        print("warm-up (not counted)", flush=True)
        self.round("bare", one)
        self.round("bare_unix", one)
        # Every user once: their OS accounts and homes are made at the first launch.
        self.round("portal", self.names)
        self.cpu.clear()
        self.machine_cpu.clear()
        for i in range(self.args.rounds):
            # Which goes first rotates, so that a drifting machine hits all alike.
            for kind in KINDS[i % 3 :] + KINDS[: i % 3]:
                results[kind].extend(self.round(kind, one))
            print(f"1 user, round {i + 1}: bare {results['bare'][-1]:.2f} s, "
                  f"bare on a socket {results['bare_unix'][-1]:.2f} s, "
                  f"portal {results['portal'][-1]['ready']:.2f} s", flush=True)  # fmt: skip
        ten = []
        for i in range(0 if self.args.skip_ten else TEN_REPEATS):
            order = KINDS[i % 3 :] + KINDS[: i % 3]
            runs = {kind: self.round(kind, self.names) for kind in order}
            last = {"bare_last": max(runs["bare"]), "bare_unix_last": max(runs["bare_unix"]),
                    "portal_last": max(r["ready"] for r in runs["portal"])}  # fmt: skip
            ratios = {"ratio": last["portal_last"] / last["bare_last"],
                      "ratio_unix": last["portal_last"] / last["bare_unix_last"]}  # fmt: skip
            ten.append({**runs, **last, **ratios})
            print(f"{len(self.names)} users, run {i + 1}: bare {last['bare_last']:.2f} s, "
                  f"bare on a socket {last['bare_unix_last']:.2f} s, "
                  f"portal {last['portal_last']:.2f} s, ratio {ratios['ratio']:.2f} "
                  f"(vs socket {ratios['ratio_unix']:.2f})", flush=True)  # fmt: skip
        return {**results, "ten": ten, "rss_peak": dict(self.rss), "cpu_ten": self.cpu,
                "machine_cpu": self.machine_cpu}  # fmt: skip

    def stop_portal(self) -> None:
        """runportal stops its children in order on SIGTERM; its group is killed after."""
        if self.portal is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.portal.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.portal.wait(60)
        kill_group(self.portal, 0)

    def cleanup(self) -> None:
        ABORT.set()
        self.done.set()
        self.stop_bare()
        if self.portal is not None and self.portal.poll() is None:
            with contextlib.suppress(Exception):
                self.stop_sessions(self.names, timeout=30)
        self.stop_portal()
        # Backstop for sessions whose stop was lost: the spawner finds them by their state
        # files and stops their whole cgroup (sandbox, server, kernels).
        if self.facts:
            spawner = LocalProcessSpawner(
                Path(self.facts["runtime_dir"]), socket_dir=Path(self.facts["socket_dir"])
            )
            for server in spawner.list_servers():
                with contextlib.suppress(Exception):
                    spawner.stop(server.state)
            shutil.rmtree(self.facts["router_run_dir"], ignore_errors=True)
        shutil.rmtree(self.var, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="one-user rounds of each (7)")
    parser.add_argument("--users", type=int, default=10, help="users launching at once (10)")
    parser.add_argument("--skip-ten", action="store_true", help="only the one-user rounds")
    parser.add_argument("--port", type=int, default=PORT, help=f"the portal's port ({PORT})")
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
        print_portal_logs(bench.var)
        raise
    finally:
        bench.cleanup()
    now = datetime.now(UTC)
    # The portal's tuning variables change the figures: name those that were set.
    tuning = ("SPAWN_", "SESSION_", "LOCAL_", "WEB_THREADS", "WORKER_CONCURRENCY")
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
        poll=POLL,
        port=args.port,
        runner="root" if os.geteuid() == 0 else "an ordinary user",
        isolation=bench.facts["isolation"],
        observed=bench.observed,
        cpus=bench.cpus,
        memory_mb=bench.memory_mb,
        pool_cpus=bench.env["SESSION_POOL_CPUS"],
        pool_memory=bench.env["SESSION_POOL_MEMORY_MB"],
        pool_source=bench.facts["pool_source"],
        web_threads=os.environ.get("WEB_THREADS", "8"),
    )
    publish(args, "Launch", report(results), "launch", now, results)


if __name__ == "__main__":
    main()
