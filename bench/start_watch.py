"""Start watcher: what its loop costs with nothing starting and with 10 servers starting.

Runs the worker's real loop (``sessions_app.worker_steps.StartWatcher``) in this process on a
fresh PostgreSQL database (``bench_start_watch``, dropped at the end), against real local
servers that never answer (a Python sleeping in place of JupyterLab, started by the local
spawner with ``LOCAL_ISOLATION=off``: a poll's cost does not depend on the sandbox). For each
case it counts the loop's passes and reads the CPU time of the loop's thread and of its
PostgreSQL backend. Cases: nothing starting (the idle pause); 10 servers this process started
(what a spawn worker's loop sees), at several ``SPAWN_POLL_SECONDS``; 10 servers of another
process (a worker restarted since: each poll reads the cgroup and tries the socket).

Usage: ``.venv/bin/python bench/start_watch.py [--seconds 20]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg

# isort: split
from common import ROOT, machine_basics, manage, postgresql_version

DATABASE = "bench_start_watch"  # the bench's own, created fresh and dropped
SERVER = "postgres://postgres@127.0.0.1:5432"
STARTING = 10


def _database(action: str) -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        if action == "create":
            conn.execute(f"CREATE DATABASE {DATABASE}")


def _thread_cpu(native_id: int) -> float:
    for thread in psutil.Process().threads():
        if thread.id == native_id:
            return float(thread.user_time + thread.system_time)
    return 0.0


def _backend_cpu() -> float:
    """CPU seconds of the database's backends other than this one's (the loop's)."""
    with psycopg.connect(f"{SERVER}/{DATABASE}") as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (DATABASE,),
        ).fetchall()
    total = 0.0
    for (pid,) in rows:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def _measure(seconds: float) -> dict[str, float]:
    from sessions_app import start_watch
    from sessions_app.worker_steps import StartWatcher

    passes = 0
    check = start_watch.sessions_starting_check

    def counted(spawner: Any) -> Any:
        nonlocal passes
        passes += 1
        return check(spawner)

    start_watch.sessions_starting_check = counted
    watcher = StartWatcher()
    try:
        watcher.start()
        time.sleep(1.0)  # connected, the first passes made
        native_id = watcher._thread.native_id or 0
        cpu0, db0, passes0, began = _thread_cpu(native_id), _backend_cpu(), passes, time.monotonic()
        time.sleep(seconds)
        cpu1, db1, passes1 = _thread_cpu(native_id), _backend_cpu(), passes
        wall = time.monotonic() - began
    finally:
        watcher.stop()
        start_watch.sessions_starting_check = check
    count = passes1 - passes0
    return {
        "passes_per_s": count / wall,
        "loop_cpu_pct": 100 * (cpu1 - cpu0) / wall,
        "db_cpu_pct": 100 * (db1 - db0) / wall,
        "loop_ms_per_pass": 1000 * (cpu1 - cpu0) / max(count, 1),
    }


def _start_servers(count: int) -> list[Any]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from sessions_app.models import Environment, Session
    from sessions_app.spawners import get_spawner
    from sessions_app.spawners.base import SpawnRequest

    spawner = get_spawner()
    environment = Environment.objects.get(slug="ecmwf-dss")
    sleeper = [sys.executable, "-c", "import time; time.sleep(3600)"]
    sessions = []
    for index in range(count):
        user = get_user_model().objects.create_user(f"starter{index}")
        session_id = uuid.uuid4()
        request = SpawnRequest(
            session_id=str(session_id),
            username=user.get_username(),
            user_id=user.pk,
            memory_mb=1024,
            cpus=1,
            duration_seconds=3600,
            home_dir=Path(settings.STORAGE_HOME_ROOT) / f"u{index}",
            backend_settings={"command": sleeper},
        )
        state = spawner.start(request, lambda message: None)
        now = timezone.now()
        sessions.append(
            Session.objects.create(
                id=session_id,
                user=user,
                environment=environment,
                state=Session.State.STARTING,
                created_at=now,
                admitted_at=now,
                start_requested_at=now,
                spawner_state=state,
                message="Waiting for JupyterLab to answer",
            )
        )
    return sessions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="jlp-bench-watch-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"{SERVER}/{DATABASE}",
        "SPAWNER": "local",
        "LOCAL_ISOLATION": "off",
        "LOCAL_SPAWNER_RUNTIME_DIR": str(scratch / "run"),
        "STORAGE_HOME_ROOT": str(scratch / "home"),
        "STORAGE_SCRATCH_ROOT": str(scratch / "scratch"),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
    }
    _database("create")
    try:
        manage(env, "migrate", "--noinput")
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.conf import settings
        from django.db import connection

        from sessions_app.spawners import get_spawner, processes

        settings.SPAWN_TIMEOUT_SECONDS = 10**6  # the servers never answer: none may time out
        rows: list[tuple[str, float, dict[str, float]]] = []
        connection.close()
        rows.append(("nothing starting", settings.SPAWN_POLL_SECONDS, _measure(args.seconds)))
        sessions = _start_servers(STARTING)
        connection.close()
        for interval in (0.02, 0.05, 0.1, 0.25):
            settings.SPAWN_POLL_SECONDS = interval
            rows.append((f"{STARTING} starting, own", interval, _measure(args.seconds)))
        # Another process's servers: this one never started them (no child to waitpid).
        kept = list(processes.children.values())
        processes.children.clear()
        settings.SPAWN_POLL_SECONDS = 0.05
        rows.append((f"{STARTING} starting, another's", 0.05, _measure(args.seconds)))
        spawner = get_spawner()
        for session in sessions:
            spawner.stop(session.spawner_state)
        del kept
        connection.close()
    finally:
        _database("drop")
    machine = machine_basics()
    print(
        f"{machine['nproc']} CPUs ({machine['cpu']}), PostgreSQL "
        f"{postgresql_version(f'{SERVER}/postgres')}, {args.seconds:.0f} s per case\n"
    )
    print("| case | SPAWN_POLL_SECONDS | passes/s | loop CPU | its database backend CPU |")
    print("| --- | --- | --- | --- | --- |")
    for case, interval, figures in rows:
        print(
            f"| {case} | {interval} | {figures['passes_per_s']:.1f} | "
            f"{figures['loop_cpu_pct']:.2f} % ({figures['loop_ms_per_pass']:.2f} ms/pass) | "
            f"{figures['db_cpu_pct']:.2f} % |"
        )


if __name__ == "__main__":
    main()
