"""What ``bench/launch.py`` polls and counts: is a server usable yet, and whose CPU was used.

Imported as ``launch_probes`` (bench/ is on ``sys.path``, see ``common.py``).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import psycopg
import requests
from psycopg import sql

# isort: split
from common import ROOT

# The portal's own packages: the spawner's socket client and the sessions' cgroups.
sys.path.insert(0, str(ROOT))
from sessions_app.spawners import limits  # noqa: E402
from sessions_app.spawners.unix_http import UnixHTTPConnection, accepts  # noqa: E402


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


def unix_answers(path: str, url: str, token: str) -> bool:
    if not accepts(path, 5):  # the same cheap connect test first
        return False
    connection = UnixHTTPConnection(path, 5)
    try:
        connection.request("GET", url, headers={"Authorization": f"token {token}"})
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):  # a server still starting
        return False
    finally:
        connection.close()


def ensure_database(url: str) -> None:
    parts = urlsplit(url)
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        name = parts.path.lstrip("/")
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def port_free(port: int) -> bool:
    # SO_REUSEADDR as nginx binds: only a listener, not a connection of a past run, blocks it.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def machine_busy() -> float:
    """CPU seconds all CPUs of the machine have been busy so far (/proc/stat: user, nice,
    system, irq, softirq)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    user, nice, system, _idle, _iowait, irq, softirq = (int(field) for field in fields)
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def sessions_cpu(session_ids: list[str]) -> float:
    """CPU seconds used so far by these sessions' cgroups (each made at its session's start);
    NaN without cgroups. Not their common parent's count: other portals' sessions are there."""
    layout = limits.cgroup_layout()
    if layout is None:
        return float("nan")
    total = 0.0
    for session_id in session_ids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            if layout.version == 2:
                stat = (layout.parents["unified"] / session_id / "cpu.stat").read_text()
                total += int(stat.split("usage_usec ", 1)[1].split()[0]) / 1e6
            elif "cpuacct" in layout.parents:
                usage = layout.parents["cpuacct"] / session_id / "cpuacct.usage"
                total += int(usage.read_text()) / 1e9
    return total


def own_cpu() -> float:
    """CPU seconds this process (the clients' threads) has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def tree_cpu(procs: list[psutil.Process]) -> float:
    """CPU seconds used so far by ``procs`` and their descendants: those that run, and those
    that ended and were waited for (a server's short-lived helpers, e.g. jupyter-lsp's probes,
    about 0.3 s per JupyterLab start here), as a session's cgroup counts them too."""
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            for member in [proc, *proc.children(recursive=True)]:
                times = member.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
    return total
