"""The "Waiting clients" section of docs/benchmarks.md, from ``bench/waiting.py``'s figures.

Imported as ``waiting_report`` by ``bench/waiting.py`` (bench/ is on ``sys.path``, see
``common.py``).
"""

from __future__ import annotations

from typing import Any

TARGET_P99_MS, TARGET_WAKE_S = 50.0, 1.0  # issue 12, "Measure"
REPORT = """## Waiting clients

Measured {date} with `{command}` on {nproc} CPUs ({cpu}), {ram_gib} GiB RAM, Linux {kernel},
Python {python}, PostgreSQL {postgresql}; load average {load_before:.2f} (1 min) before the run.

The portal ran as `make run` runs it (`manage.py runportal`: nginx on port {port}, the web
behind it, the Celery workers and beat, the embedded broker), as {runner}, on PostgreSQL: waiting
clients are woken by `NOTIFY`. The web: `{web_command}` ({web_processes} processes). The
sessions' pool was one environment (`SESSION_POOL_CPUS={cpus}`, `SESSION_POOL_MEMORY_MB={memory_mb}`),
held by the observer's real running session (a JupyterLab), so the other {queued} users'
`POST /api/v1/session/` queued (real launches, nothing written to the database by hand). The
crowd: {users} of them with {polls_each} long polls each (`GET /api/v1/session/?wait={wait}`, sent
again when their time is up), {polls} waiting, and {streams} with the session page's event stream
open (`GET /session/events/`), each user's clients from an address of its own (127.0.0.x):
**{waiting} waiting clients**; {refused} answers were 429 (too many waits), {errors} requests
failed.

The observer's requests, one at a time on a keep-alive connection through nginx, {probes} of each
taking turns, with nobody waiting and then with the crowd waiting ({answered_probes} long polls
came back, their time up, and were sent again meanwhile):

| request | nobody waiting: p50 / p99 | {waiting} waiting: p50 / p99 | ratio p50 / p99 |
| --- | --- | --- | --- |
{rows}

Target (issue 12): another user's requests p99 ≤ {target_p99:.0f} ms with {polls} long polls
waiting: **{verdict}** (the slowest p99 of the three: {worst:.1f} ms).

The web processes together, before and after {idle:.0f} s in which the observer sent nothing:

| | nobody waiting | {waiting} waiting | per waiting client |
| --- | --- | --- | --- |
| resident memory | {rss_none:.0f} MB | {rss_crowd:.0f} MB | {rss_each:+.0f} KB |
| CPU in {idle:.0f} s | {cpu_none:.3f} s ({pct_none:.2f} % of a CPU) | {cpu_crowd:.3f} s ({pct_crowd:.2f} % of a CPU) | – |

({answered_idle} long polls came back during those {idle:.0f} s with the crowd.)

Wake-up: the crowd's users stopped (`DELETE /api/v1/session/`) one after the other; the time
from sending the DELETE until each of that user's clients was answered (a long poll: 404, no
session; a stream: a `status` event, no longer active):

| clients | answered | p50 | p99 | max | within {target_wake:.0f} s (the target) |
| --- | --- | --- | --- | --- | --- |
{wake_rows}

The DELETE itself answered in {delete_p50:.1f} ms (p50; p99 {delete_p99:.1f} ms). A stop also moves
the queue, so every open stream wakes, re-reads its status (its place and estimated wait: the
whole queue, computed once a second per web process and shared by the streams) and is told its new place ({events} events in all); those reads take turns on the
one thread per web process that the waiting views share, ahead of the stopped user's long polls.
`--streams 0` shows the long polls alone. Stops, not promotions: a long poll answers when its
session runs (or ends), so a promotion reaches it once the server started (see "Launch").
Raw figures: `bench/results/` (not in git).
"""  # noqa: E501 (a Markdown table row is one line)

LABELS = {
    "healthz": "`/healthz`",
    "environments": "`GET /api/v1/environments/` (token)",
    "session_api": "`GET /api/v1/session/` (token, its running session)",
    "session_page": "the session page `/session/` (signed-in cookie)",
}


def report(r: dict[str, Any]) -> str:
    none, crowd = r["probes_none"], r["probes_crowd"]
    rows = "\n".join(
        f"| {label} | {none[k]['p50_ms']:.1f} / {none[k]['p99_ms']:.1f} ms | "
        f"{crowd[k]['p50_ms']:.1f} / {crowd[k]['p99_ms']:.1f} ms | "
        f"×{crowd[k]['p50_ms'] / none[k]['p50_ms']:.2f} / "
        f"×{crowd[k]['p99_ms'] / none[k]['p99_ms']:.2f} |"
        for k, label in LABELS.items()
    )
    wake_rows = "\n".join(
        f"| {label} | {w['count']}/{w['expected']} | {w['p50_ms']:.0f} ms | {w['p99_ms']:.0f} ms"
        f" | {w['max_ms']:.0f} ms | {w['within_target']}/{w['expected']} |"
        for label, w in (("long polls", r["wake"]["polls"]), ("streams", r["wake"]["streams"]))
        if w["expected"]
    )
    web_none, web_crowd = r["web_none"], r["web_crowd"]
    waiting = r["crowd"]["polls"] + r["crowd"]["streams"]
    worst = max(crowd[k]["p99_ms"] for k in ("environments", "session_api", "session_page"))
    delete = r["wake"]["polls"]["delete"]
    return REPORT.format(
        **r["machine"], **r, rows=rows, wake_rows=wake_rows, waiting=waiting,
        polls=r["crowd"]["polls"], streams=r["crowd"]["streams"],
        queued=r["users"] + r["streams_wanted"], refused=r["counts"]["refused_429"],
        errors=r["counts"]["errors"], events=r["counts"]["events"],
        target_p99=TARGET_P99_MS, target_wake=TARGET_WAKE_S, worst=worst,
        verdict="met" if worst <= TARGET_P99_MS else "missed",
        rss_none=web_none["rss_mb"], rss_crowd=web_crowd["rss_mb"],
        rss_each=(web_crowd["rss_mb"] - web_none["rss_mb"]) * 1024 / max(waiting, 1),
        cpu_none=web_none["cpu_s"], cpu_crowd=web_crowd["cpu_s"], idle=web_none["idle_s"],
        pct_none=100 * web_none["cpu_s"] / web_none["idle_s"],
        pct_crowd=100 * web_crowd["cpu_s"] / web_crowd["idle_s"],
        answered_idle=web_crowd["polls_answered_meanwhile"],
        answered_probes=r["answered_during_probes"],
        delete_p50=delete["p50_ms"], delete_p99=delete["p99_ms"],
    )  # fmt: skip
