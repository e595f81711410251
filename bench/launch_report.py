"""The "Launch" section of docs/benchmarks.md, from ``bench/launch.py``'s figures.

Imported as ``launch_report`` by ``bench/launch.py`` (bench/ is on ``sys.path``, see
``common.py``).
"""

from __future__ import annotations

import statistics
import subprocess
from importlib.metadata import version
from typing import Any

import redis

# isort: split
from common import machine_basics, postgresql_version, spread

TARGET_ADDED, TARGET_RATIO = 0.3, 1.1  # issue 10, "Measure": ≤ +0.3 s for one, ≤ ×1.1 for ten
KIND_LABELS = {"bare": "bare, TCP", "bare_unix": "bare, Unix socket", "portal": "portal"}
REPORT = """## Launch

Measured {date} with `{command}` on {nproc} CPUs ({cpu}), {ram_gib} GiB RAM, Linux {kernel},
Python {python}, JupyterLab {jupyterlab}, nginx {nginx}, PostgreSQL {postgresql}, Redis {redis};
load average {load_before:.2f} (1 min) before the run (other work on the machine makes the
figures noisy: see the CPU table below).

The portal ran as `make run` runs it (`manage.py runportal`: nginx on port {port}, gunicorn
behind it on a Unix socket, a Celery worker and beat), as {runner}, so its sessions ran in
**{mode}**: {mode_detail}. Sessions' capacity pool for the run: `SESSION_POOL_CPUS={pool_cpus}`,
`SESSION_POOL_MEMORY_MB={pool_memory}` ({pool_source}), so that no launch waits for
admission: this measures launch latency, not the queue (the default pool, 4 × CPUs, would
queue most of ten 2-CPU launches on this machine). Each session: {cpus} CPUs, {memory_mb} MB.

| launch to usable | bare JupyterLab, TCP | bare JupyterLab, Unix socket | portal, through nginx | portal vs bare (TCP / Unix) | target | JupyterHub 6.1, local spawner (for scale) |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

One portal launch, medians from the POST: the POST answered after {posted:.3f} s, `GET
/api/v1/session/` showed the URL after {running:.2f} s, the lab page answered through nginx
after {ready:.2f} s.

Where the machine's CPU went while {users} servers started at once, from the start of the round
until the last one answered (CPU-seconds, median of the rounds; the machine has {nproc} CPUs):

| {users} at once | wall time | the servers | the portal (web, worker, nginx) | this client | the rest (PostgreSQL, Redis, kernel, other work) | servers' share of the busy CPU |
| --- | --- | --- | --- | --- | --- | --- |
{cpu_rows}

Peak resident memory of the portal during the run: web {web:.0f} MB, worker {worker:.0f} MB,
router (nginx) {router:.0f} MB, beat and supervisor {other:.0f} MB, together {total:.0f} MB
(gunicorn: master and 2 processes × {web_threads} threads; one Celery worker with 16 threads;
without the JupyterLab servers). CPU the portal used during a several-user launch round,
median: web {cpu_web:.2f} s, worker {cpu_worker:.2f} s, router {cpu_router:.2f} s.

*Bare, TCP*: `jupyter-lab` started directly (no sandbox, no cgroup, no limits) on a TCP port,
timed until `lab?token=…` answers 200. *Bare, Unix socket*: the same server with the local
spawner's flags (`--ServerApp.sock=…`), timed until `lab` answers 200 on the socket to
`Authorization: token …`. *Portal*: from `POST /api/v1/session/` until the `url` that `GET
/api/v1/session/?wait=30` (the API's long poll) returns answers 200 through nginx to
`Authorization: Bearer <portal token>` (nginx asks `/auth/route/`, then forwards with the
server's token); the session starts in its sandbox, as its account, in its cgroup. JupyterLab
is polled every {poll:.0f} ms (a connect, then the HTTP request). One-user rounds take the three
in turns (which goes first rotates) after one uncounted warm-up of each (the portal's with
every user, which makes their OS accounts and homes); the several-user rows start all launches
at once (threads) and stop none before the last answers. CPU: `/proc/stat` for the machine, each
session's cgroup (`cpuacct`) for the portal's servers, the processes' own counts for the
bare servers, the portal's processes and this client. Raw figures: `bench/results/` (not in
git).
"""  # noqa: E501 (a Markdown table row is one line)


def nginx_version() -> str:
    done = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    return done.stderr.strip().rpartition("/")[2] or "?"


def machine(env: dict[str, str]) -> dict[str, Any]:
    return {
        **machine_basics(),
        "jupyterlab": version("jupyterlab"),
        "nginx": nginx_version(),
        "postgresql": postgresql_version(env["DATABASE_URL"]),
        "redis": redis.Redis.from_url(env["CELERY_BROKER_URL"]).info()["redis_version"],
    }


def mode_detail(results: dict[str, Any]) -> str:
    isolation, seen = results["isolation"], results["observed"]
    if not seen:
        return isolation["summary"]
    return (
        f"the first session's server ran as `{seen['server_user']}` (uid {seen['server_uid']}), "
        f"under `{seen['leader']}`, in its own {seen['cgroup'] or 'no'} cgroup; whole-session "
        f"limits: {isolation['limits']}"
    )


def cpu_rows(used: list[dict[str, Any]]) -> list[str]:
    rows = []
    for kind, label in KIND_LABELS.items():
        mine = [u for u in used if u["kind"] == kind]
        if not mine:
            continue

        def median(key: str, rounds: list[dict[str, Any]] = mine) -> float:
            return statistics.median(u[key] for u in rounds)

        portal = f"{median('portal'):.1f} s" if kind == "portal" else "–"
        share = statistics.median(u["servers"] / u["machine"] for u in mine)
        rows.append(
            f"| {label} | {median('wall'):.1f} s | {median('servers'):.1f} s | {portal} | "
            f"{median('client'):.1f} s | {median('rest'):.1f} s | {share:.0%} |"
        )
    return rows


def report(results: dict[str, Any]) -> str:
    bare, unix, portal, ten = (results[k] for k in ("bare", "bare_unix", "portal", "ten"))
    ready = statistics.median(r["ready"] for r in portal)
    added = ready - statistics.median(bare)
    added_unix = ready - statistics.median(unix)
    verdict = {True: "met", False: "**missed**"}
    rows = [
        f"| one user, median (min–max) of {len(bare)} | {spread(bare)} | {spread(unix)} | "
        f"{spread([r['ready'] for r in portal])} | {added:+.2f} s / {added_unix:+.2f} s | "
        f"≤ +{TARGET_ADDED} s: {verdict[added <= TARGET_ADDED]} / "
        f"{verdict[added_unix <= TARGET_ADDED]} | +1.8 s (bare 1.9 s) |"
    ]
    if ten:
        ratio = statistics.median(r["ratio"] for r in ten)
        ratio_unix = statistics.median(r["ratio_unix"] for r in ten)
        rows.append(
            f"| {results['users']} users at once, until the last answers, median (min–max) of "
            f"{len(ten)} | {spread([r['bare_last'] for r in ten])} | "
            f"{spread([r['bare_unix_last'] for r in ten])} | "
            f"{spread([r['portal_last'] for r in ten])} | ×{ratio:.2f} / ×{ratio_unix:.2f} | "
            f"≤ ×{TARGET_RATIO}: {verdict[ratio <= TARGET_RATIO]} / "
            f"{verdict[ratio_unix <= TARGET_RATIO]} | ×1.6 |"
        )
    steps = {key: statistics.median(r[key] for r in portal) for key in portal[0]}
    rss = {key: value / 2**20 for key, value in results["rss_peak"].items()}
    fields = {**results, **results["machine"], **steps, **rss, "rows": "\n".join(rows)}
    fields.update(poll=results["poll"] * 1000, mode=results["isolation"]["mode"] + " mode")
    fields["mode_detail"] = mode_detail(results)
    fields["cpu_rows"] = "\n".join(cpu_rows(results["machine_cpu"])) or "| (no run) |"
    cpu = results["cpu_ten"] or [{name: float("nan") for name in ("web", "worker", "router")}]
    fields.update({f"cpu_{name}": statistics.median(r[name] for r in cpu) for name in cpu[0]})
    return REPORT.format_map(fields)
