"""Broker benchmark: which Celery transport the embedded default (`make run`) should use.

Part 1, the transports, each with two real worker processes (threads pool, acks late, prefetch
1: the portal's settings) and a trivial task that notes when it starts:

- latency from enqueue to start, one producer at 20 tasks/s;
- a burst from 4 producer processes at once: throughput, latency, tasks run twice or never;
- idle CPU of the workers (and of the broker's server, if it has one) over 20 s;
- a worker killed with SIGKILL while it holds tasks that run and tasks with an ETA: what comes
  back when the workers are started again.

The candidates: kombu's filesystem transport (the embedded default before; it crashed the
worker), kombu's SQLAlchemy transport on a SQLite file, and a redis-server on a Unix socket
(the portal starts it as a child of ``runportal``).

Part 2, the portal as ``make run`` starts it (``runportal`` on a temporary var/, its embedded
broker, a real worker and beat): USERS users loop launch/stop CYCLES times each through the
API (the environment's server is a sleeper, so the loop measures the broker, not JupyterLab).
Every session must end stopped, the worker must stay alive, no task may be lost (the sweeps
that re-send lost work are slowed down so that a lost task shows as a stuck session).

It writes the "Broker" section of ``docs/benchmarks.md`` and raw JSON under ``bench/results/``.
Usage: ``.venv/bin/python bench/broker.py [--tasks 500] [--cycles 300] [--users 4]
[--transports filesystem,sqla,redis] [--skip-loop]``; ``--render RAW.json`` writes the section
again from an earlier run's raw figures.

The module is also the workers' Celery app (``celery -A broker worker``, run in ``bench/``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil
from celery import Celery
from kombu import Connection, Producer

# isort: split
from common import (
    ROOT,
    add_output_arguments,
    command_line,
    machine_basics,
    publish,
    stop_on_signals,
    write_section,
)

# --- The workers' app ---------------------------------------------------------------------------

app = Celery("bench_broker")
app.conf.update(
    broker_url=os.environ.get("BENCH_BROKER_URL", "memory://"),
    broker_transport_options=json.loads(os.environ.get("BENCH_TRANSPORT_OPTIONS", "{}")),
    broker_connection_retry_on_startup=True,
    # The portal's own settings (portal/settings.py, "Celery").
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    result_backend=None,
)


def _note(event: str, tag: str, sent: float) -> None:
    # One short write with O_APPEND per line: lines of many threads and processes never mix.
    line = f"{event} {tag} {sent:.6f} {time.time():.6f} {os.getpid()}\n".encode()
    fd = os.open(os.environ["BENCH_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.task(name="bench.record")
def record(tag: str, sent: float, hold: float = 0.0) -> None:
    _note("start", tag, sent)
    if hold:
        time.sleep(hold)
    _note("end", tag, sent)


# --- The candidates -----------------------------------------------------------------------------

WORKERS, CONCURRENCY = 2, 8
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass
class Candidate:
    name: str
    url: str
    options: dict[str, Any]
    server: list[str] | None = None  # a broker server to start first (its command)
    socket: Path | None = None
    note: str = ""


def candidates(folder: Path) -> dict[str, Callable[[dict[str, Any]], Candidate]]:
    """Each candidate, as a function of extra transport options (the kill test varies them)."""

    def filesystem(extra: dict[str, Any]) -> Candidate:
        root = folder / "fs"
        for sub in ("queue", "processed", "control"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        # What portal/settings.py configured for the embedded default before.
        options = {
            "data_folder_in": str(root / "queue"),
            "data_folder_out": str(root / "queue"),
            "processed_folder": str(root / "processed"),
            "control_folder": str(root / "control"),
            "store_processed": False,
            "polling_interval": 0.05,
        }
        return Candidate("filesystem", "filesystem://", {**options, **extra})

    def sqla(extra: dict[str, Any]) -> Candidate:
        # Its transport options go to create_engine(), which refuses "polling_interval": the
        # poll stays at kombu's 1 s.
        return Candidate("sqla+sqlite", f"sqla+sqlite:///{folder / 'broker.sqlite3'}", extra)

    def redis(extra: dict[str, Any]) -> Candidate:
        sock = folder / "redis.sock"
        server = [
            REDIS_SERVER, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "600",
            "--dir", str(folder), "--save", "", "--appendonly", "yes",
            "--appendfsync", "everysec", "--daemonize", "no",
        ]  # fmt: skip
        options = {"visibility_timeout": 12 * 3600, **extra}
        return Candidate("redis (unix socket)", f"redis+socket://{sock}", options, server, sock)

    return {"filesystem": filesystem, "sqla": sqla, "redis": redis}


# --- Processes ----------------------------------------------------------------------------------


@dataclass
class Rig:
    """A candidate's broker server (if any) and its workers, writing to one log."""

    candidate: Candidate
    folder: Path
    log: Path
    server: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BENCH_BROKER_URL": self.candidate.url,
            "BENCH_TRANSPORT_OPTIONS": json.dumps(self.candidate.options),
            "BENCH_LOG": str(self.log),
            "PYTHONPATH": str(ROOT / "bench"),
        }

    def start_server(self) -> None:
        if self.candidate.server is None:
            return
        with open(self.folder / "server.log", "ab") as out:
            self.server = subprocess.Popen(self.candidate.server, stdout=out, stderr=out)
        assert self.candidate.socket is not None
        deadline = time.monotonic() + 10
        while not self.candidate.socket.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not open its socket")
            time.sleep(0.02)

    def start_workers(self) -> None:
        with open(self.folder / "workers.log", "ab") as out:
            self.workers = [
                subprocess.Popen(
                    [
                        sys.executable, "-m", "celery", "-A", "broker", "worker",
                        "--pool", "threads", "--concurrency", str(CONCURRENCY),
                        "--hostname", f"bench{i}@%h", "--loglevel", "WARNING",
                        "--without-mingle", "--without-gossip",
                    ],
                    cwd=ROOT / "bench", env=self.env, stdout=out, stderr=out,
                    start_new_session=True,
                )
                for i in range(WORKERS)
            ]  # fmt: skip

    def kill_workers(self, sig: int = signal.SIGKILL) -> None:
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, sig)
        for worker in self.workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()

    def stop(self) -> None:
        self.kill_workers(signal.SIGTERM)
        if self.server is not None:
            self.server.terminate()
            self.server.wait(30)

    def crashed(self) -> list[int]:
        return [w.returncode for w in self.workers if w.poll() is not None]


@contextlib.contextmanager
def producer_for(candidate: Candidate) -> Iterator[Producer]:
    # A connection of its own, not the app's pool: the pool would keep the first candidate's
    # broker for the next ones.
    with Connection(candidate.url, transport_options=candidate.options) as conn:
        with conn.Producer() as producer:
            yield producer


def _produce(candidate: Candidate, prefix: str, count: int, interval: float) -> None:
    """Send ``count`` tasks tagged ``<prefix>-<n>``, ``interval`` seconds apart (0: at once)."""
    with producer_for(candidate) as producer:
        for n in range(count):
            record.apply_async((f"{prefix}-{n}", time.time()), producer=producer)
            if interval:
                time.sleep(interval)


def read_log(log: Path) -> list[tuple[str, str, float, float, int]]:
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        event, tag, sent, at, pid = line.split()
        rows.append((event, tag, float(sent), float(at), int(pid)))
    return rows


def wait_started(log: Path, tags: set[str], timeout: float, rig: Rig | None = None) -> set[str]:
    """Wait until every tag started (or the timeout, or every worker of ``rig`` died); the
    tags that did."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {tag for event, tag, *_ in read_log(log) if event == "start"} & tags
        if seen == tags or time.monotonic() > deadline:
            return seen
        if rig is not None and len(rig.crashed()) == len(rig.workers):
            return seen
        time.sleep(0.05)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


@contextlib.contextmanager
def rig_for(candidate: Candidate, folder: Path) -> Iterator[Rig]:
    folder.mkdir(parents=True, exist_ok=True)
    rig = Rig(candidate, folder, folder / "tasks.log")
    try:
        rig.start_server()
        rig.start_workers()
        _produce(candidate, "probe", 1, 0)
        if wait_started(rig.log, {"probe-0"}, 90) != {"probe-0"}:
            raise RuntimeError(f"{candidate.name}: the workers took no task in 90 s")
        yield rig
    finally:
        rig.stop()


# --- Part 1: the transports ---------------------------------------------------------------------


def measure_transport(make: Callable[[dict[str, Any]], Candidate], folder: Path, tasks: int,
                      producers: int) -> dict[str, Any]:  # fmt: skip
    candidate = make({})
    print(f"\n== {candidate.name}", flush=True)
    result: dict[str, Any] = {"name": candidate.name}
    with rig_for(candidate, folder / "main") as rig:
        # Latency at a light, steady load.
        _produce(candidate, "steady", 200, 0.05)
        wait_started(rig.log, {f"steady-{n}" for n in range(200)}, 60, rig)
        # A burst from several producer processes at once.
        context = multiprocessing.get_context("spawn")
        senders = [
            context.Process(target=_produce, args=(candidate, f"burst{p}", tasks, 0))
            for p in range(producers)
        ]
        began = time.time()
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        sent_in = time.time() - began
        burst = {f"burst{p}-{n}" for p in range(producers) for n in range(tasks)}
        wait_started(rig.log, burst, 180, rig)
        # Idle: nothing queued; what the workers (and the server) burn.
        time.sleep(2)
        procs = [psutil.Process(w.pid) for w in rig.workers if w.poll() is None]
        if rig.server is not None:
            procs.append(psutil.Process(rig.server.pid))
        before, idle = cpu_seconds(procs), 20.0
        time.sleep(idle)
        idle_cpu = (cpu_seconds(procs) - before) / idle
        rows = read_log(rig.log)
        crashed = rig.crashed()
    starts = [r for r in rows if r[0] == "start"]
    steady = [(at - sent) * 1000 for _, tag, sent, at, _ in starts if tag.startswith("steady-")]
    burst_rows = [r for r in starts if r[1] in burst]
    runs = Counter(tag for _, tag, *_ in burst_rows)
    burst_latency = [(at - sent) * 1000 for _, _, sent, at, _ in burst_rows]
    # From the first task sent (not from the producers' start-up) to the last one started.
    first_sent = min((sent for _, _, sent, _, _ in burst_rows), default=began)
    last_start = max((at for *_, at, _ in burst_rows), default=began)
    result.update(
        steady_ms={
            "p50": statistics.median(steady) if steady else None,
            "p99": percentile(steady, 0.99) if steady else None,
            "received": len(set(t for _, t, *_ in starts if t.startswith("steady-"))),
        },
        burst={
            "tasks": len(burst),
            "producers": producers,
            "sent_in_s": round(sent_in, 2),
            "per_s": round(len(runs) / max(last_start - first_sent, 1e-6), 1),
            "p50_ms": statistics.median(burst_latency) if burst_latency else None,
            "p99_ms": percentile(burst_latency, 0.99) if burst_latency else None,
            "never_ran": len(burst - set(runs)),
            "ran_twice": sum(1 for n in runs.values() if n > 1),
        },
        idle_cpu_percent=round(idle_cpu * 100, 2),
        workers_crashed=crashed,
    )
    if crashed:
        result["kill_skipped"] = "the workers had crashed"
    else:
        result["kill"] = measure_kill(make({}), folder / "kill")
    print(json.dumps(result, indent=2), flush=True)
    return result


HOLDS, ETAS, ETA_AHEAD, AFTER_KILL = 4, 2, 15.0, 40.0


def measure_kill(candidate: Candidate, folder: Path) -> dict[str, Any]:
    """Kill -9 the workers while they run HOLDS tasks and hold ETAS tasks due ETA_AHEAD s later;
    start them again and see, for AFTER_KILL s, which of those tasks run (and how often)."""
    with rig_for(candidate, folder) as rig:
        now = time.time()
        eta = datetime.now(UTC) + timedelta(seconds=ETA_AHEAD)
        with producer_for(candidate) as producer:
            for n in range(HOLDS):
                record.apply_async((f"hold-{n}", now, 3.0), producer=producer)
            for n in range(ETAS):
                record.apply_async((f"eta-{n}", now), eta=eta, producer=producer)
        wait_started(rig.log, {f"hold-{n}" for n in range(HOLDS)}, 30)
        time.sleep(0.5)  # the workers, with threads to spare, have taken the ETA tasks too
        rig.kill_workers(signal.SIGKILL)
        killed_at = time.time()
        rig.start_workers()
        time.sleep(AFTER_KILL)
        rows = read_log(rig.log)
        held = broker_holds(rig)
    ends = Counter(tag for event, tag, _, at, _ in rows if event == "end")
    starts_after = Counter(
        tag for event, tag, _, at, _ in rows if event == "start" and at > killed_at
    )
    return {
        "holds_ended": sum(1 for n in range(HOLDS) if ends[f"hold-{n}"]),
        "holds_rerun_after_kill": sum(1 for n in range(HOLDS) if starts_after[f"hold-{n}"]),
        "etas_ran": sum(1 for n in range(ETAS) if ends[f"eta-{n}"]),
        "etas_ran_twice": sum(1 for n in range(ETAS) if ends[f"eta-{n}"] > 1),
        "held_by_broker": held,
        "watched_s": AFTER_KILL,
    }


def broker_holds(rig: Rig) -> int | None:
    """Messages the broker still keeps for a later redelivery (None: it keeps none)."""
    if rig.candidate.socket is not None:
        import redis

        client = redis.Redis(unix_socket_path=str(rig.candidate.socket))
        return int(client.hlen("unacked"))
    return None


# --- Part 2: the portal's launch/stop loop --------------------------------------------------------


# As the CI test (tests/portal/test_embedded_broker.py), the sweeps that re-send lost work are
# slowed to an hour, so that a lost task shows as a stuck session. Unlike it, sessions keep the
# default isolation (multi-user when run as root): the embedded default as it is.
LOOP_ENV = {"SESSION_SWEEP_SECONDS": "3600"}


def measure_loop(users: int, cycles: int) -> dict[str, Any]:
    # The driver is shared with the CI test (tests/portal/embedded.py), which runs fewer cycles.
    sys.path.insert(0, str(ROOT))
    from tests.portal.embedded import EmbeddedPortal, launch_stop_loop

    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp:
        with EmbeddedPortal(Path(tmp) / "var", extra_env=LOOP_ENV) as portal:
            tokens = portal.make_users(users)
            worker_pids = portal.worker_pids()
            began = time.monotonic()
            outcome = launch_stop_loop(portal.base, tokens, cycles)
            elapsed = time.monotonic() - began
            final = portal.session_states()
            result = {
                "users": users,
                "cycles": cycles,
                "elapsed_s": round(elapsed, 1),
                "cycle_p50_s": round(statistics.median(outcome.cycle_seconds), 3),
                "cycle_p99_s": round(percentile(outcome.cycle_seconds, 0.99), 3),
                "errors": outcome.errors[:10],
                "error_count": len(outcome.errors),
                "states": final,
                "worker_same_pid": portal.worker_pids() == worker_pids,
                "restarts": portal.restarts(),
                "isolation": "multi-user" if os.geteuid() == 0 else "single-user",
            }
    print(json.dumps(result, indent=2), flush=True)
    return result


# --- The report ----------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def render(results: dict[str, Any]) -> str:
    m, now = results["machine"], datetime.fromisoformat(results["measured_at"])
    producers, tasks = results["burst_shape"]
    lines = [
        "## Broker",
        "",
        f"Measured {now:%Y-%m-%d} on {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, "
        f"Linux {m['kernel']}, Python {m['python']}, Celery {results['versions']['celery']}, "
        f"kombu {results['versions']['kombu']}, SQLAlchemy {results['versions']['sqlalchemy']}, "
        f"{results['versions']['redis-server']}.",
        f"Command: `{results['command']}`",
        "",
        f"Transports: {WORKERS} worker processes × {CONCURRENCY} threads, acks late, prefetch 1 "
        "(the portal's settings); a task that notes its start. Latency is enqueue → start.",
        "",
        "| transport | latency at 20 tasks/s p50 / p99 | burst: "
        f"{producers} producers × {tasks} | burst p50 / p99 | never ran / ran twice "
        "| idle CPU (workers + server) | worker crashed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["transports"]:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['error']} | | | | | |")
            continue
        s, b = r["steady_ms"], r["burst"]
        crashed = r["workers_crashed"]
        if crashed:  # throughput and idle CPU of dead workers mean nothing
            rate, idle = "– (workers dead)", "–"
            died = f"**yes**, {len(crashed)} of {WORKERS} (exit {', '.join(map(str, crashed))})"
        else:
            rate, idle, died = f"{b['per_s']:.0f} tasks/s", f"{r['idle_cpu_percent']:.1f} %", "no"
        lines.append(
            f"| {r['name']} | {_ms(s['p50'])} / {_ms(s['p99'])} | {rate} "
            f"| {_ms(b['p50_ms'])} / {_ms(b['p99_ms'])} | {b['never_ran']} / {b['ran_twice']} "
            f"| {idle} | {died} |"
        )
    lines += [
        "",
        f"Worker killed (SIGKILL) while running {HOLDS} tasks (3 s each) and holding {ETAS} "
        f"tasks with an ETA {ETA_AHEAD:.0f} s ahead; workers started again at once and watched "
        f"for {AFTER_KILL:.0f} s:",
        "",
        "| transport | running tasks run again | ETA tasks run (twice) | kept by the broker "
        "for a later redelivery |",
        "| --- | --- | --- | --- |",
    ]
    for r in results["transports"]:
        if "kill" not in r:
            continue
        k = r["kill"]
        held = "none (lost)" if k["held_by_broker"] is None else str(k["held_by_broker"])
        lines.append(
            f"| {r['name']} | {k['holds_rerun_after_kill']}/{HOLDS} "
            f"| {k['etas_ran']}/{ETAS} ({k['etas_ran_twice']}) | {held} |"
        )
    for r in results.get("kill_variants", []):
        k = r["kill"]
        lines.append(
            f"| {r['name']} | {k['holds_rerun_after_kill']}/{HOLDS} "
            f"| {k['etas_ran']}/{ETAS} ({k['etas_ran_twice']}) | {k['held_by_broker']} |"
        )
    loop = results.get("loop")
    if loop:
        lines += [
            "",
            f"The portal as `make run` starts it (redis-server child, a real worker and beat, "
            f"SQLite): {loop['users']} users × {loop['cycles']} launch/stop cycles each through "
            "the API, at once; the environment's server is a sleeper (the loop measures the "
            f"broker, not JupyterLab; sessions in {loop.get('isolation', '?')} mode, the "
            "default); the sweeps that re-send lost work slowed to an hour, so that a lost task "
            "would leave a session stuck.",
            "",
            "| cycles | time | one cycle p50 / p99 | sessions by end state | errors "
            "| worker alive, same pid | restarts |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| {loop['users'] * loop['cycles']} | {loop['elapsed_s']:.0f} s "
            f"| {loop['cycle_p50_s']:.2f} s / {loop['cycle_p99_s']:.2f} s "
            f"| {', '.join(f'{k}: {v}' for k, v in sorted(loop['states'].items()))} "
            f"| {loop['error_count']} | {'yes' if loop['worker_same_pid'] else 'no'} "
            f"| {loop['restarts']} |",
        ]
    lines += ["", DECISION.rstrip()]
    return "\n".join(lines) + "\n"


DECISION = """\
**Decision: the embedded default runs a `redis-server` of its own** (Debian's package, which
`make run` installs like `make test` installs Chromium), started by `runportal` before the worker
on `var/broker/redis.sock` (no TCP port, socket 0600 in a 0700 folder), with an append-only file
there so queued tasks outlive a restart. Why not the server-less transports:

- kombu's **filesystem** transport is the one that crashed the worker in the portal (50–96
  launch/stop cycles): a reader opens a message file before its writer has filled it
  (`JSONDecodeError`), and the exception ends the worker. Above, both workers died of it and
  most tasks never ran.
- kombu's **SQLAlchemy** transport on SQLite holds under load (nothing lost, nothing run twice:
  `BEGIN IMMEDIATE` serialises the readers), but it polls every second — its transport options
  go to `create_engine()`, which refuses `polling_interval` — so each task waits half a second
  on average, and a launch (admission, then spawn) two hops of that; every poll takes SQLite's
  write lock, so four producers took 34 s to send the 2,000 tasks of the burst (Redis: 9 s,
  the producers' own cost) and the workers ran them at a quarter of Redis's rate; delivered
  rows are never deleted (the table grows; kombu#276, mozilla/ichnaea#22, aiida-core#1253); and
  it keeps no record of delivered-but-unacknowledged messages: what a killed worker held
  (running tasks, and deadline tasks waiting for their ETA) is gone, as the kill table shows.
- **Redis** answers in milliseconds at a fraction of the idle CPU, delivers each message to one
  worker (the burst ran no task twice with two workers), and keeps what a killed worker held in
  its `unacked` set: it comes back after the visibility timeout. That timeout stays 12 h, as for
  a production Redis: with 5 s (the kill table's last row) the tasks come back at once, but an
  ETA task longer than the timeout is delivered again and runs twice (celery#2599, kombu#337)
  — harmless for these idempotent tasks, yet a copy per timeout for every session; the portal's
  sweeps re-send lost spawn and stop work and fail sessions stuck starting within minutes
  instead.
"""


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=500, help="tasks per producer in the burst")
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--transports", default="filesystem,sqla,redis")
    parser.add_argument("--cycles", type=int, default=300, help="launch/stop cycles per user")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--skip-loop", action="store_true")
    parser.add_argument("--skip-transports", action="store_true")
    parser.add_argument(
        "--render", type=Path, help="only write the section again from an earlier run's raw JSON"
    )
    add_output_arguments(parser)
    args = parser.parse_args()
    if args.render:
        section = render(json.loads(args.render.read_text()))
        print(section)
        write_section(args.output, "Broker", section)
        return
    stop_on_signals()
    now = datetime.now(UTC)
    server_version = subprocess.run(
        [REDIS_SERVER, "--version"], capture_output=True, text=True, check=False
    ).stdout.split(" sha=")[0]
    results: dict[str, Any] = {
        "machine": machine_basics(),
        "versions": {
            "celery": _version("celery"),
            "kombu": _version("kombu"),
            "sqlalchemy": _version("SQLAlchemy"),
            "redis-server": server_version,
        },
        "command": command_line(),
        "measured_at": now.isoformat(),
        "burst_shape": [args.producers, args.tasks],
        "transports": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp:
        makers = candidates(Path(tmp))
        for key in [] if args.skip_transports else args.transports.split(","):
            try:
                results["transports"].append(
                    measure_transport(makers[key], Path(tmp) / key, args.tasks, args.producers)
                )
            except Exception as exc:  # a transport that fails is a result, not a crash
                results["transports"].append({"name": key, "error": f"{type(exc).__name__}: {exc}"})
        if "redis" in args.transports.split(",") and not args.skip_transports:
            # What a short visibility timeout would change: redelivery, and ETA duplicates.
            short = {"visibility_timeout": 5, "unacked_restore_interval": 1,
                     "unacked_restore_throttle": 1}  # fmt: skip
            candidate = makers["redis"](short)
            candidate.name = "redis, visibility timeout 5 s"
            results["kill_variants"] = [
                {"name": candidate.name, "kill": measure_kill(candidate, Path(tmp) / "short")}
            ]
    if not args.skip_loop:
        results["loop"] = measure_loop(args.users, args.cycles)
    section = render(results)
    publish(args, "Broker", section, "broker", now, results)


if __name__ == "__main__":
    main()
