"""Local isolation benchmark: what the sandbox and the cgroup add to a launch.

Root only (multi-user mode). Four ways to run the same trivial program (``python -E -s -c
pass``, the session's interpreter) to its exit, in turns: bare; in a new session cgroup
(created, joined between fork and exec, removed); in the bubblewrap sandbox as the session's
account; and both. Then the local spawner's own ``start`` call (folders, account, cgroup,
sandbox; it does not wait for the server) and start-to-running of a real JupyterLab, in
multi-user mode and in single-user mode (``LOCAL_ISOLATION=off``, no sandbox, as root).

It writes the "Local isolation" section of ``docs/benchmarks.md`` and raw JSON under
``bench/results/``. Usage: ``.venv/bin/python bench/local_isolation.py [--rounds 20]
[--launches 5]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# isort: split
# The scripts' shared helpers, bench/common.py (bench/ is on sys.path: the script's folder).
from common import (
    ROOT,
    add_output_arguments,
    command_line,
    machine_basics,
    publish,
    spread,
    stop_on_signals,
)

sys.path.insert(0, str(ROOT))
from sessions_app.spawners import limits, os_accounts  # noqa: E402
from sessions_app.spawners.base import ServerStatus, SpawnRequest  # noqa: E402
from sessions_app.spawners.isolation import IsolationConfig, multi_user_problem  # noqa: E402
from sessions_app.spawners.local import LocalProcessSpawner  # noqa: E402
from sessions_app.spawners.sandbox import Sandbox, SandboxSpec  # noqa: E402

PK = 99_190  # a portal account key of the benchmark's own (uid 299190)
PROGRAM = [sys.executable, "-E", "-s", "-c", "pass"]
KINDS = {
    "bare": "bare",
    "cgroup": "in a new cgroup",
    "sandbox": "in the sandbox, as the account",
    "both": "sandbox + cgroup (what a session gets)",
}


def run_once(kind: str, base: Path, account: os_accounts.SessionAccount) -> float:
    session_id = uuid.uuid4().hex
    started = time.perf_counter()
    cgroup = None
    if kind in ("cgroup", "both"):
        cgroup = limits.make_cgroup(session_id, 2**30, 1, 512)
    box = None
    argv = PROGRAM
    if kind in ("sandbox", "both"):
        sockets = base / "sockets" / session_id
        sockets.mkdir(parents=True)
        shutil.chown(sockets, account.uid, account.gid)
        spec = SandboxSpec(account=account, home=base / "home", socket_dir=sockets)
        box = Sandbox(spec, PROGRAM)
        argv = box.argv
    try:
        subprocess.run(
            argv,
            check=True,
            pass_fds=tuple(box.fds) if box else (),
            preexec_fn=limits.limiter(2**30, {0}, cgroup) if cgroup else None,
        )
    finally:
        if box is not None:
            box.close()
    if cgroup is not None:
        cgroup.remove()
    return time.perf_counter() - started


def launch_once(spawner: LocalProcessSpawner, base: Path, mode: str) -> tuple[float, float]:
    """(seconds in ``start``, seconds from ``start`` to running)."""
    request = SpawnRequest(
        session_id=uuid.uuid4().hex,
        username="bench",
        user_id=PK,
        memory_mb=2048,
        cpus=1,
        duration_seconds=3600,
        # Each mode its own folders: single-user mode writes in them as root.
        home_dir=base / f"home-{mode}",
        scratch_dir=base / f"scratch-{mode}",
    )
    started = time.perf_counter()
    state = spawner.start(request, progress=lambda message: None)
    returned = time.perf_counter()
    try:
        while spawner.poll(state).status != ServerStatus.RUNNING:
            time.sleep(0.02)
        return returned - started, time.perf_counter() - started
    finally:
        spawner.stop(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="runs of each way")
    parser.add_argument("--launches", type=int, default=5, help="JupyterLab launches per mode")
    add_output_arguments(parser)
    args = parser.parse_args()
    problem = multi_user_problem()
    if problem:
        sys.exit(f"needs multi-user isolation: {problem}")
    stop_on_signals()
    now = datetime.now(UTC)
    account = os_accounts.account_ensure(os_accounts.account_for(PK, "jlp-u", 200_000, 299_999))
    base = Path(tempfile.mkdtemp(prefix="jlp-b-", dir="/tmp"))
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    launches: dict[str, dict[str, list[float]]] = {}
    try:
        for folder in ("home", "scratch"):
            os_accounts.private_dir_hand_over(base / folder, account.uid, account.gid)
        for _ in range(args.rounds):
            for kind in KINDS:  # in turns, so that drifts of the machine hit every way alike
                times[kind].append(run_once(kind, base, account))
        for mode in ("off", "auto"):
            spawner = LocalProcessSpawner(
                base / "run", socket_dir=base / "s", isolation=IsolationConfig(mode=mode)
            )
            runs = [launch_once(spawner, base, mode) for _ in range(args.launches)]
            launches[mode] = {"start": [r[0] for r in runs], "running": [r[1] for r in runs]}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    results: dict[str, Any] = {
        "machine": machine_basics(),
        "limits": limits.enforcement(),
        "rounds": args.rounds,
        "seconds": times,
        "launches": launches,
    }
    bare = sorted(times["bare"])[len(times["bare"]) // 2]
    rows = [
        f"| {label} | {spread(times[kind])} | "
        f"{(sorted(times[kind])[len(times[kind]) // 2] - bare) * 1000:+.0f} ms |"
        for kind, label in KINDS.items()
    ]
    launch_rows = [
        f"| {'multi-user (sandbox, account, cgroup)' if mode == 'auto' else 'single-user (off)'} "
        f"| {spread(figures['start'])} | {spread(figures['running'])} |"
        for mode, figures in launches.items()
    ]
    basics = results["machine"]
    section = "\n".join(
        [
            "## Local isolation",
            "",
            f"Run {now:%Y-%m-%d} on {basics['nproc']} CPUs ({basics['cpu']}), "
            f"{basics['ram_gib']} GiB, Linux {basics['kernel']}, {results['limits']}: "
            f"`{command_line()}`.",
            "",
            f"The same program (`python -E -s -c pass`) to its exit, {args.rounds} runs each, "
            "in turns (cgroup: made, joined, removed after the exit); median (min–max), and "
            "the median's difference to the bare run:",
            "",
            "| way | time | cost over bare |",
            "| --- | --- | --- |",
            *rows,
            "",
            f"A real JupyterLab through the local spawner, {args.launches} launches per mode: "
            "the `start` call (folders, account, cgroup, sandbox; it does not wait) and start "
            "to running (the server answers on its socket):",
            "",
            "| mode | `start` | start to running |",
            "| --- | --- | --- |",
            *launch_rows,
        ]
    )
    publish(args, "Local isolation", section, "local_isolation", now, results)


if __name__ == "__main__":
    main()
