"""Which process runs a session's spawn task, and whether it still runs.

A start whose spawn task died (its worker killed) before the server existed can only be sent
again safely if that task can no longer call ``start()``: two runs of it for one session would
fight over its cgroup, socket folder and state file (one pod name). A task that is only slow
must never be doubled. So ``session_spawn`` writes its process's name on the row
(``Session.spawn_owner``) as it claims the start, and the start watcher sends the start again
only when :func:`alive` proves that process gone.

Proof needs the same process table: the same host name and PID namespace (containers that share
a host name but not their PIDs cannot tell). A process id is reused, so its start time is part
of the name. Workers in other pods or machines (Kubernetes) cannot tell: :func:`alive` answers
None and the watcher does as for a task it knows nothing about.
"""

from __future__ import annotations

import os
import socket
from functools import cache

import psutil

# Start times are read from /proc in clock ticks (1/100 s): a difference within this is the
# same process.
_SAME_START_SECONDS = 0.5


@cache
def _machine() -> str:
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}"


def here() -> str:
    """This process, as ``<host>/<pid namespace>:<pid>:<start time>``."""
    pid = os.getpid()
    return f"{_machine()}:{pid}:{psutil.Process(pid).create_time():.2f}"


def alive(owner: str) -> bool | None:
    """Whether the process named ``owner`` (:func:`here`) runs: True, False when this process
    can prove it gone, None when it cannot tell (another machine, no owner, a bad name)."""
    try:
        machine, pid_text, started_text = owner.rsplit(":", 2)
        pid, started = int(pid_text), float(started_text)
    except ValueError:
        return None
    if machine != _machine():
        return None
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - started) >= _SAME_START_SECONDS:
            return False  # the id was reused
        # Killed, but not yet reaped by its parent: it runs nothing.
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return None
