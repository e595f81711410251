"""Soak benchmark: many launch → running → stop cycles against a whole portal, for drift and leaks.

The portal as ``make run`` starts it (``runportal``: nginx, gunicorn with uvicorn's workers, a
Celery worker per queue and beat) on a PostgreSQL cluster and a Redis of its own, with real
JupyterLab servers of the local back-end (multi-user mode as root): the chaos suite's stack,
``tests/chaos/stack.py``, with the sweeps at their default period. USERS users loop,
CONCURRENCY at a time: launch (``POST /api/v1/session/``), wait until the API says running
(its long poll), stop (``DELETE``), wait until the session ended as stopped. After a warm-up
of one cycle per user (their OS accounts and homes are made then; not counted) it records:

- every failed cycle, with what went wrong;
- launch time (the POST until the API says running, with the URL): p50/p95 of the first and
  the last 50 cycles (of the first and last half when there are fewer than 100), and the p50
  of each block of 50;
- resident memory, open descriptors and sockets of the web, the workers, beat and the router
  after the warm-up and at the end (and every 15 s in the raw JSON);
- what sessions leave behind, after the warm-up and at the end, every session stopped: their
  processes, cgroups, state files, logs, socket folders, lock files, and the files in var/.

It writes the "Soak" section of ``docs/benchmarks.md`` and raw JSON under ``bench/results/``.
300 cycles take about 15 minutes on 2 CPUs, so ``make bench`` does not run it.
Usage: ``.venv/bin/python bench/soak.py [--cycles 300] [--users 12] [--concurrency 4]
[--no-warm-up]``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import requests

# isort: split
# The scripts' shared helpers, bench/common.py (bench/ is on sys.path: the script's folder).
from common import (
    ROOT,
    add_output_arguments,
    command_line,
    machine_basics,
    publish,
    stop_on_signals,
)

sys.path.insert(0, str(ROOT))
from tests.chaos.checks import leftovers  # noqa: E402
from tests.chaos.stack import Stack, wait_for  # noqa: E402

WAIT = 30  # seconds: GET /api/v1/session/?wait=…, the API's long poll
STEP_TIMEOUT = 120.0  # the most a launch or a stop may take before the cycle counts as failed
SAMPLE_SECONDS = 15.0
BLOCK = 50
# Portal account keys of the soak's users (their OS accounts): apart from the chaos suite's.
FIRST_PK = 99_400


class CycleFailed(Exception):
    """A cycle that did not go launch → running → stopped; the message says where it ended."""


@dataclass
class Cycle:
    number: int
    user: str
    began_s: float  # since the start of the run
    launch_s: float | None = None  # POST → the API says running
    cycle_s: float | None = None  # POST → the session ended as stopped
    error: str = ""


class Soak:
    def __init__(self, stack: Stack, concurrency: int) -> None:
        self.stack = stack
        self.concurrency = concurrency
        self.began = time.monotonic()
        self.trace: list[dict[str, Any]] = []
        self.done = threading.Event()

    # --- the cycles ---------------------------------------------------------------------------

    def run(self, count: int, first: int = 0) -> list[Cycle]:
        """``count`` cycles, ``concurrency`` at a time; slot k takes turns among the users
        k, k + concurrency, … (a user has one session at a time)."""
        numbers = itertools.count(first)
        lock = threading.Lock()
        last = first + count
        names = self.stack.names

        def slot(k: int) -> list[Cycle]:
            done: list[Cycle] = []
            turns = itertools.cycle(names[k :: self.concurrency])
            while True:
                with lock:
                    number = next(numbers)
                if number >= last:
                    return done
                done.append(self.cycle(number, next(turns)))

        with ThreadPoolExecutor(self.concurrency) as pool:
            cycles = [c for done in pool.map(slot, range(self.concurrency)) for c in done]
        return sorted(cycles, key=lambda c: c.number)

    def cycle(self, number: int, name: str) -> Cycle:
        began = time.monotonic()
        cycle = Cycle(number, name, round(began - self.began, 2))
        try:
            session_id = self._launch(name)
            cycle.launch_s = round(time.monotonic() - began, 3)
            self._stop(name, session_id)
            cycle.cycle_s = round(time.monotonic() - began, 3)
        except (CycleFailed, requests.RequestException, ValueError, KeyError) as exc:
            cycle.error = (
                f"{type(exc).__name__}: {exc}" if not isinstance(exc, CycleFailed) else str(exc)
            )
            self._recover(name)
        outcome = (
            cycle.error or f"running after {cycle.launch_s} s, stopped after {cycle.cycle_s} s"
        )
        print(f"cycle {number} {name}: {outcome}", flush=True)
        return cycle

    def _launch(self, name: str) -> str:
        began = time.monotonic()
        launched = self.stack.launch(name)
        if launched.status_code != 201:
            raise CycleFailed(f"launch answered {launched.status_code}: {launched.text[:200]}")
        session_id = str(launched.json()["id"])
        while time.monotonic() - began < STEP_TIMEOUT:
            answer = self.stack.call(name, "GET", f"session/?wait={WAIT}", timeout=WAIT + 30)
            if answer.status_code == 404:
                raise CycleFailed(f"ended before running: {self._last(name)}")
            if answer.status_code == 429:  # too many waits open: as a client would, wait
                time.sleep(1)
                continue
            if answer.status_code != 200:
                raise CycleFailed(f"GET answered {answer.status_code}: {answer.text[:200]}")
            body = answer.json()
            if body["state"] == "running" and body["url"]:
                return session_id
        raise CycleFailed(f"not running within {STEP_TIMEOUT:.0f} s")

    def _stop(self, name: str, session_id: str) -> None:
        stopped = self.stack.call(name, "DELETE", "session/")
        if stopped.status_code != 202:
            raise CycleFailed(f"stop answered {stopped.status_code}: {stopped.text[:200]}")
        deadline = time.monotonic() + STEP_TIMEOUT
        while self.stack.call(name, "GET", "session/").status_code != 404:
            if time.monotonic() > deadline:
                raise CycleFailed(f"not stopped within {STEP_TIMEOUT:.0f} s")
            time.sleep(0.1)
        last = self.stack.call(name, "GET", "sessions/").json()["results"][0]
        if last["id"] != session_id or last["state"] != "stopped":
            raise CycleFailed(f"ended {last['state']} ({last['reason']}: {last['message']})")

    def _last(self, name: str) -> str:
        last = self.stack.call(name, "GET", "sessions/").json()["results"][0]
        return f"{last['state']} ({last['reason']}: {last['message']})"

    def _recover(self, name: str) -> None:
        """After a failed cycle: stop whatever the user still has, so the next cycle can run."""
        with contextlib.suppress(Exception):
            if self.stack.call(name, "GET", "session/").status_code == 200:
                self.stack.call(name, "DELETE", "session/")
            wait_for(
                lambda: self.stack.call(name, "GET", "session/").status_code == 404,
                STEP_TIMEOUT,
                f"{name}'s session stopped",
                interval=0.5,
            )

    # --- what the portal holds ------------------------------------------------------------------

    def groups(self) -> dict[str, list[psutil.Process]]:
        """The portal's processes by role: the web (gunicorn's master and workers), the Celery
        workers, beat, the router (nginx's master and workers)."""
        found: dict[str, list[psutil.Process]] = {}
        for role, group in (("web", "web"), ("router", "router"), ("beat", "beat"),
                            *((w, "workers") for w in ("worker-control", "worker-spawn",
                                                       "worker-storage"))):  # fmt: skip
            pid = self.stack.pid(role)
            with contextlib.suppress(psutil.Error):
                if pid is not None:
                    proc = psutil.Process(pid)
                    tree = [proc, *proc.children()] if group in ("web", "router") else [proc]
                    found.setdefault(group, []).extend(tree)
        return found

    def sample(self) -> dict[str, Any]:
        """RSS (MB), open descriptors and sockets of each role, summed over its processes."""
        figures: dict[str, Any] = {"at_s": round(time.monotonic() - self.began, 1)}
        for group, procs in self.groups().items():
            rss = fds = sockets = 0
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
                    fds += proc.num_fds()
                    sockets += len(proc.net_connections("all"))
            figures[group] = {"rss_mb": round(rss / 2**20, 1), "fds": fds, "sockets": sockets}
        return figures

    def sample_every(self, seconds: float) -> None:
        while not self.done.wait(seconds):
            with contextlib.suppress(Exception):
                self.trace.append(self.sample())

    def var_files(self) -> set[str]:
        """Every file in var/, relative to it."""
        var = self.stack.var_dir
        return {
            str(Path(root, f).relative_to(var)) for root, _, names in os.walk(var) for f in names
        }

    def leftovers(self) -> dict[str, int]:
        """What the stopped sessions left, counted by kind (0 everywhere: nothing)."""
        counts = {kind: len(items) for kind, items in leftovers(self.stack).items()}
        var = self.stack.var_dir
        files = [var / name for name in self.var_files()]
        counts["lock files"] = sum(p.name.endswith(".lock") for p in files)
        # By top folder: homes and scratch grow with users (made at the warm-up), the rest
        # should not grow with cycles.
        tops = Counter(
            f"var/{parts[0]}/" if len(parts) > 1 else "var/ itself"
            for parts in (p.relative_to(var).parts for p in files)
        )
        for top, count in sorted(tops.items()):
            counts[f"files in {top}"] = count
        return counts


# --- figures and the report ----------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def launch_figures(cycles: list[Cycle]) -> dict[str, Any]:
    """p50/p95 of the first and last 50 launches (halves when fewer than 100), p50 per 50."""
    times = [c.launch_s for c in cycles if c.launch_s is not None]
    if not times:
        return {}
    n = min(BLOCK, max(1, len(times) // 2))
    first, last = times[:n], times[-n:]
    blocks = [times[i : i + BLOCK] for i in range(0, len(times), BLOCK)]
    return {
        "n": n,
        "first_p50": statistics.median(first),
        "first_p95": percentile(first, 0.95),
        "last_p50": statistics.median(last),
        "last_p95": percentile(last, 0.95),
        "block_p50": [round(statistics.median(b), 2) for b in blocks],
    }


REPORT = """## Soak

Measured {date} with `{command}` on {nproc} CPUs ({cpu}), {ram_gib} GiB RAM, Linux {kernel},
Python {python}; load average {load_before:.2f} before the run, {load_after:.2f} after it.
The portal ran as `make run` runs it (`runportal`: nginx, gunicorn with 2 uvicorn workers, a
Celery worker per queue, beat) on a PostgreSQL cluster and a Redis of its own
(`tests/chaos/stack.py`), its sessions real JupyterLab servers in {isolation}.

{users} users, {concurrency} at a time: {cycles} cycles of launch → running (the API's long
poll) → stop → stopped, after a warm-up of one cycle per user (not counted; {warm_failed}
failed).

| cycles | failed | wall time | launch p50 / p95, first {n} | last {n} | launch p50 per {block} |
| --- | --- | --- | --- | --- | --- |
| {cycles} | {failed} | {wall:.0f} s | {first_p50:.2f} s / {first_p95:.2f} s | {last_p50:.2f} s / {last_p95:.2f} s | {blocks} |
{failures}
The portal's processes after the warm-up → at the end (RSS; open descriptors; sockets):

| process | RSS | open descriptors | sockets |
| --- | --- | --- | --- |
{processes}

Left behind by the sessions after the warm-up → at the end, every session stopped:

| what | after the warm-up | at the end |
| --- | --- | --- |
{leftovers}
{new_files}"""  # noqa: E501 (a Markdown table row is one line)


def render(results: dict[str, Any]) -> str:
    launch = results["launch"] or {"n": 0, "first_p50": 0, "first_p95": 0, "last_p50": 0,
                                   "last_p95": 0, "block_p50": []}  # fmt: skip
    errors = Counter(c["error"] for c in results["cycles"] if c["error"])
    failures = "".join(f"\n- {count} × {error}" for error, count in errors.most_common(10))
    start, end = results["resources_start"], results["resources_end"]
    processes = "\n".join(
        f"| {group} | {start[group]['rss_mb']:.0f} → {end[group]['rss_mb']:.0f} MB | "
        f"{start[group]['fds']} → {end[group]['fds']} | "
        f"{start[group]['sockets']} → {end[group]['sockets']} |"
        for group in ("web", "workers", "beat", "router")
        if group in start and group in end
    )
    before, after = results["leftovers_start"], results["leftovers_end"]
    rows = "\n".join(
        f"| {kind} | {before.get(kind, 0)} | {after.get(kind, 0)} |"
        for kind in dict.fromkeys([*before, *after])
    )
    return REPORT.format(
        **results["machine"],
        **{
            key: results[key]
            for key in (
                "date",
                "command",
                "load_before",
                "load_after",
                "isolation",
                "users",
                "concurrency",
                "wall",
                "warm_failed",
            )
        },  # fmt: skip
        cycles=len(results["cycles"]),
        failed=sum(1 for c in results["cycles"] if c["error"]),
        n=launch["n"],
        block=BLOCK,
        first_p50=launch["first_p50"],
        first_p95=launch["first_p95"],
        last_p50=launch["last_p50"],
        last_p95=launch["last_p95"],
        blocks=" → ".join(f"{p:.2f}" for p in launch["block_p50"]) + " s",
        failures=f"\nFailures, by message:{failures}\n" if failures else "",
        processes=processes,
        leftovers=rows,
        new_files=(
            f"\nFiles in var/ that were not there after the warm-up ({len(new)}): "
            + ", ".join(f"`{name}`" for name in new[:10])
            + (", …" if len(new) > 10 else "")
            + "\n"
            if (new := results.get("new_var_files", []))
            else ""
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=300, help="cycles counted (300)")
    parser.add_argument("--users", type=int, default=12, help="users taking turns (12)")
    parser.add_argument("--concurrency", type=int, default=4, help="cycles at a time (4)")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false")
    add_output_arguments(parser)
    args = parser.parse_args()
    if args.concurrency > args.users:
        parser.error("--concurrency cannot exceed --users (one session per user)")
    stop_on_signals()
    load_before = os.getloadavg()[0]
    # The sweeps at their default period (the chaos suite runs them faster).
    stack = Stack(users=args.users, prefix="soak", first_pk=FIRST_PK,
                  extra_env={"SESSION_SWEEP_SECONDS": "30"})  # fmt: skip
    try:
        stack.start()
        soak = Soak(stack, args.concurrency)
        warm = soak.run(args.users if args.warm_up else 0, first=-args.users)
        resources_start, leftovers_start = soak.sample(), soak.leftovers()
        files_start = soak.var_files()
        threading.Thread(target=soak.sample_every, args=(SAMPLE_SECONDS,), daemon=True).start()
        began = time.monotonic()
        cycles = soak.run(args.cycles)
        wall = time.monotonic() - began
        soak.done.set()
        # Every session ended as it was asked: what is left now stays.
        wait_for(lambda: not stack.active(), 60, "no active session", interval=0.5)
        time.sleep(2)
        resources_end, leftovers_end = soak.sample(), soak.leftovers()
        new_files = sorted(soak.var_files() - files_start)
        isolation = stack.facts["isolation"]
    except BaseException:
        print(f"--- the end of runportal's log ---\n{stack.output()[-4000:]}", file=sys.stderr)
        raise
    finally:
        stack.stop()
    now = datetime.now(UTC)
    results = {
        "date": f"{now:%Y-%m-%d %H:%M} UTC",
        "command": command_line(),
        "machine": machine_basics(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "isolation": isolation.split(":")[0],
        "users": args.users,
        "concurrency": args.concurrency,
        "cycles": [asdict(c) for c in cycles],
        "warm_up": [asdict(c) for c in warm],
        "warm_failed": sum(1 for c in warm if c.error),
        "wall": wall,
        "launch": launch_figures(cycles),
        "resources_start": resources_start,
        "resources_end": resources_end,
        "resources_trace": soak.trace,
        "leftovers_start": leftovers_start,
        "leftovers_end": leftovers_end,
        "new_var_files": new_files,
    }
    publish(args, "Soak", render(results), "soak", now, results)


if __name__ == "__main__":
    main()
