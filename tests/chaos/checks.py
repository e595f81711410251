"""What every chaos test asserts at its end, and what it asks of an answer during an outage.

The end state (issue 13, "Done when"): no server of a session that is not active (an orphan),
no running session without its server, and, once everything is stopped through the API,
nothing left of any session: processes, cgroups, state files, sockets, logs.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import psutil
import requests

from sessions_app.spawners.limits import cgroup_session_ids, session_cgroup
from sessions_app.spawners.local import RUNTIME_ENV, SESSION_ENV
from sessions_app.spawners.processes import marked_processes
from sessions_app.spawners.socket_route import route_link
from sessions_app.spawners.unix_http import answers
from tests.chaos.stack import ACTIVE_STATES, Stack

# The paths a message shown to people must not carry (issue 13, item 5).
LOCAL_PATHS = ("/tmp/", "/run/", "/var/", "/home/", "/root/", "/srv/")


def session_processes(state: dict[str, Any]) -> list[psutil.Process]:
    """Every live process of the session: its cgroup's, else its leader's tree."""
    found: list[psutil.Process] = []
    cgroup = session_cgroup(str(state.get("session_id", "")))
    pids: set[int] = cgroup.pids() if cgroup is not None and cgroup.exists() else set()
    with contextlib.suppress(psutil.Error, KeyError, TypeError, ValueError):
        leader = psutil.Process(int(state["pid"]))
        if abs(leader.create_time() - float(state["create_time"])) < 1.0:
            pids |= {leader.pid, *(p.pid for p in leader.children(recursive=True))}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def server_process(state: dict[str, Any]) -> psutil.Process | None:
    """The session's JupyterLab process (not the sandbox's bwrap, whose arguments name it
    too), if it runs."""
    for proc in session_processes(state):
        with contextlib.suppress(psutil.Error):
            if proc.name() != "bwrap" and any("jupyter-lab" in a for a in proc.cmdline()[:2]):
                return proc
    return None


def server_answers(state: dict[str, Any]) -> bool:
    """Whether the session's own JupyterLab answers on its socket with its token."""
    try:
        socket, base_url, token = str(state["socket"]), str(state["base_url"]), str(state["token"])
    except (KeyError, TypeError):
        return False
    return answers(socket, base_url, token, timeout=5)


def inconsistencies(stack: Stack) -> list[str]:
    """Orphan servers and running sessions without a server, in words (empty: none)."""
    rows = stack.sessions()
    servers = stack.servers()
    active = {row["id"] for row in rows if row["state"] in ACTIVE_STATES}
    problems = [f"server of session {key}, which is not active" for key in servers.keys() - active]
    for row in rows:
        if row["state"] != "running":
            continue
        if row["id"] not in servers:
            problems.append(f"{row['username']}'s session is running without a server")
        elif not server_answers(servers[row["id"]]):
            problems.append(f"{row['username']}'s session is running; its server does not answer")
    return problems


def leftovers(stack: Stack) -> dict[str, list[str]]:
    """What is left of the stack's sessions on the machine, by kind (empty lists: nothing)."""
    ids = {row["id"] for row in stack.sessions()}
    runtime = stack.runtime_dir
    found = {
        "servers": sorted(stack.servers()),
        "processes": [
            f"{proc.pid} ({env[SESSION_ENV]})"
            for proc, env in marked_processes(RUNTIME_ENV, str(runtime), SESSION_ENV)
        ],
        "cgroups": sorted(ids & cgroup_session_ids()),
        "socket folders": sorted(
            key
            for key in ids
            if (stack.socket_dir / key).exists() or route_link(stack.socket_dir, key).exists()
        ),
    }
    for kind, folder in (("state files", "sessions"), ("logs", "logs")):
        with contextlib.suppress(FileNotFoundError):
            found[kind] = sorted(os.listdir(runtime / folder))
    return found


def assert_settled(stack: Stack) -> None:
    """The end state every chaos test ends with: consistent now, and nothing left once every
    session is stopped through the API."""
    assert inconsistencies(stack) == []
    stack.stop_all_sessions()
    left = {kind: items for kind, items in leftovers(stack).items() if items}
    assert left == {}, f"left behind after every session stopped: {left}"


def outage_problem(response: requests.Response) -> str | None:
    """None if ``response`` is what the API may answer while the database is away: a normal
    answer, or JSON 503 ``{detail, code: "unavailable"}`` with ``Retry-After``; else what is
    wrong with it."""
    kind = response.headers.get("Content-Type", "")
    said = f"{response.request.method} {response.url}: {response.status_code} {kind}"
    if response.status_code in (401, 403):
        return f"{said}: a valid token refused"
    if response.status_code < 500:
        return None if "json" in kind else f"{said}: not JSON"
    if response.status_code != 503 or "json" not in kind:
        return f"{said}: {response.text[:200]!r}"
    try:
        body = response.json()
    except ValueError:
        return f"{said}: not JSON"
    if body.get("code") != "unavailable" or not body.get("detail"):
        return f"{said}: body {body!r}"
    if not response.headers.get("Retry-After"):
        return f"{said}: no Retry-After"
    return None
