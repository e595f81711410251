"""The "Web reads" section of docs/benchmarks.md, from bench/web_reads.py's results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PATHS = ("/api/v1/session/", "/api/v1/environments/", "/healthz")
TARGET_RPS, TARGET_P99_MS = 900, 50
PARTS = (
    "authentication",
    "access policy",
    "request rates",
    "content negotiation",
    "view (query, serializer)",
    "rendering",
)
LABELS = {
    "DRF": "DRF in all (the above, and its request and response)",
    "request": "Django's handler in all (the above, and the middleware)",
}
# This script run in a copy of commit 0073809 (before this work: the ORM's queries, DRF's
# ModelSerializer, gunicorn's threads on Django's WSGI handler) with `--servers gthread --routed
# gthread`, just before the run that is written: its raw JSON, kept beside this file.
BEFORE_FILE = Path(__file__).with_name("web_reads_before.json")


def _before() -> dict[str, Any]:
    if not BEFORE_FILE.exists():
        return {"runs": [], "profile": {}}
    found: dict[str, Any] = json.loads(BEFORE_FILE.read_text())
    found["runs"] = [
        *found["runs"],
        {**found["routed"], "what": "**gthread, behind the router** (as `runportal` ran it)"},
    ]
    return found


def _cell(read: dict[str, Any]) -> str:
    flag = f", {read['not_2xx']} not 2xx" if read["not_2xx"] else ""
    return f"{read['rps']:.0f} ({read['p50_ms']:.1f} / {read['p99_ms']:.0f} ms{flag})"


def _servers(runs: list[dict[str, Any]]) -> str:
    rows = [
        "| server | processes | session | environments | healthz | web CPU per read (ms) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        cpu = " / ".join(f"{run[path]['web_cpu_ms']:.2f}" for path in PATHS)
        cells = " | ".join(_cell(run[path]) for path in PATHS)
        rows.append(f"| {run['what']} | {run['workers']} | {cells} | {cpu} |")
    return "\n".join(rows)


def _profile(now: dict[str, dict[str, float]], then: dict[str, dict[str, float]]) -> str:
    rows = [
        "| part | session: before | session: now | environments: before | environments: now |",
        "| --- | --- | --- | --- | --- |",
    ]

    def before(path: str, part: str) -> str:
        value = then.get(path, {}).get(part)
        return "–" if value is None else f"{value:.2f}"

    for part in (*PARTS, "DRF", "request"):
        cells = []
        for path in PATHS[:2]:
            cells += [before(path, part), f"{now[path][part]:.2f}"]
        rows.append(f"| {LABELS.get(part, part)} | {' | '.join(cells)} |")
    cells = []
    for path in PATHS[:2]:
        cells += [f"**{before(path, 'cpu_ms')}**", f"**{now[path]['cpu_ms']:.2f}**"]
    rows.append(f"| **one read, without the profiler** | {' | '.join(cells)} |")
    return "\n".join(rows)


def _verdict(read: dict[str, Any]) -> str:
    met = read["rps"] >= TARGET_RPS and read["p99_ms"] <= TARGET_P99_MS
    return (
        f"{read['rps']:.0f} req/s, p99 {read['p99_ms']:.0f} ms "
        f"({'meets' if met else 'misses'} the target)"
    )


def report(results: dict[str, Any]) -> str:
    machine = results["machine"]
    routed = results["routed"]
    routed_row = {**routed, "what": f"**{routed['server']}, behind the router** (as `runportal`)"}
    then = _before()
    before = ""
    if then["runs"]:
        before = f"""
The same reads before this work: this script in a copy of commit 0073809 (gunicorn's threads,
the ORM's queries), {then["date"]}, load average {then["load_before"]:.1f} / \
{then["load_after"]:.1f}:

{_servers(then["runs"])}
"""
    return f"""## Web reads

`bench/web_reads.py`, {results["date"]}, on {machine["nproc"]} CPUs ({machine["cpu"]}),
PostgreSQL {machine["postgresql"]}, Python {machine["python"]}; load average
{results["load_before"]:.1f} before the run and {results["load_after"]:.1f} after (the machine
is shared: figures of one run compare with each other better than with another run's). wrk:
1 thread, 10 connections, {results["seconds"]} s per read, with a portal token, after a 2 s
warm-up; a user with one running session row (nothing started). Each cell: requests a second
(p50 / p99). The web's CPU per read: its processes' CPU time over the requests served (the
rest of the two CPUs goes to wrk, PostgreSQL and Redis). Request rates on (their counters are
counted), sync views on {results["threads"]} threads per process (`WEB_THREADS`).

{_servers([*results["runs"], routed_row])}
{before}
**The choice: gunicorn with uvicorn's workers (uvloop, httptools) on `portal/asgi.py`.**
Django's own ASGI handler runs a sync view through several hops between the event loop and a
thread made for each request, and one sync-only middleware (WhiteNoise's, the access
policy's) turned its whole chain sync, so that an async view waited in a thread after all: 30
long polls made 34 more threads in a process. `portal/asgi.py` answers a request for a sync
view in one hop on a pool of `WEB_THREADS` threads through the sync middleware chain, as the
WSGI handler does, and sends a request for an async view that waits (the long poll with
`?wait`, the session page's event stream) through Django's async chain, where every
middleware is now async-capable: 30 long polls, no thread more
(`tests/portal/test_asgi.py`); twenty slow-header clients, no probe slower
(`tests/portal/test_slow_clients.py`). Granian runs the same application at about the same
cost; gunicorn's arbiter, signals and graceful timeout stay what `runportal` and `deploy/`
already use, so uvicorn's workers it is.

Against the issue's target (≥ {TARGET_RPS} req/s, p99 ≤ {TARGET_P99_MS} ms at c=10 on 2 CPUs),
behind the router as `runportal` runs it: session {_verdict(routed["/api/v1/session/"])},
environments {_verdict(routed["/api/v1/environments/"])}. The web now spends about 2 ms of
CPU on a read, less than half of what it did, and serves more than twice the reads a second
at less than half the p99; with wrk and PostgreSQL on the same two CPUs that is 500–600 reads a
second, not 900. What is left of a read (next table): DRF itself (its request, negotiation and
response, ~0.5 ms), the three queries' round trips through psycopg (~0.3 ms), the request
rates' Redis call (~0.25 ms), the middleware and the server (~0.6 ms with `/healthz`'s share).

### Where the CPU of a read goes

cProfile over {results["profile_requests"]} test-client requests in one process (Django's sync
middleware chain, as `portal/asgi.py` runs a sync view, without the server), in ms of CPU per
read, scaled to the read's CPU without the profiler. "Before": the same in a copy of commit
0073809, where the session read was an async view that Django's sync handler runs on a new
event loop each time.

{_profile(results["profile"], then["profile"])}

What changed (no check weaker, nothing of a result kept):

- **Queries the ORM writes once** (`portal/prepared.py`): building a query cost the ORM
  0.5–0.9 ms of CPU, sending it 25 µs. The token with its user (`portal/tokens.py`), the access
  policy (`accounts_app/policy.py`: suspended? in `ACCESS_GROUP`? one query instead of two),
  the caller's active session and the launchable environments with their options
  (`sessions_app/selectors.py`) are compiled once per process and run with new values each
  time: every request still asks the database, so a revoked token, a deactivated account, a
  suspension or a group removal counts on the very next request
  (`tests/portal/test_prepared.py`). The session read asks 3 queries instead of 4, the
  environments list 4 instead of 6.
- **Serializers build their fields once** (`portal/api_serializers.py`): DRF's
  ModelSerializer inspected the model and deep-copied every field for each object it wrote.
- The request rates (new) cost one Redis script call per request.
- Token hashing (one SHA-256, microseconds) was never the cost: it stays.

Command: `{results["command"]}`
"""
