"""Process bookkeeping for the local back-end: its children, pids that get reused, signals.

Used where the session's cgroup cannot tell (single-user mode without a writable cgroup) and to
explain why a server is gone (its exit code and the tail of its log).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import psutil

from sessions_app.spawners.base import SpawnerError, State

# The servers this OS process started, by pid, with their create time. Holding the Popen keeps
# the subprocess module from reaping them behind our back (it reaps collected running Popens)
# and lets any spawner instance read their exit code.
children: dict[int, tuple[float, subprocess.Popen[bytes]]] = {}
# The exit codes of servers reaped from ``children`` (pid: create time, code), for
# gone_message: the watchers may ask why a server ended after the reap. The oldest go first.
exit_codes: dict[int, tuple[float, int]] = {}
_EXIT_CODES_KEPT = 256


def process(pid: int, create_time: float) -> psutil.Process | None:
    """The process with this pid if it is the one started at ``create_time`` (pids get reused)."""
    if pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        # psutil derives create_time from the boot time, which shifts when the clock is stepped.
        return proc if abs(proc.create_time() - create_time) < 1.0 else None
    except psutil.Error:
        return None


def own_child_running(pid: int, create_time: float) -> bool:
    """Whether ``pid`` is a server this OS process started and has not exited (no /proc read)."""
    entry = children.get(pid)
    return entry is not None and entry[0] == create_time and entry[1].poll() is None


def process_alive(proc: psutil.Process) -> bool:
    """Whether ``proc`` runs; a zombie does not, and if it is one of our servers it is reaped."""
    entry = children.get(proc.pid)
    if entry is not None:
        entry[1].poll()  # waitpid(WNOHANG) for a child; only returns the code of a reaped one
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def marked_processes(
    runtime_env: str, runtime_dir: str, session_env: str
) -> Iterator[tuple[psutil.Process, dict[str, str]]]:
    """The processes whose environment marks them as sessions of this runtime directory."""
    for proc in psutil.process_iter(["environ"]):
        env = proc.info["environ"] or {}
        if env.get(runtime_env) == runtime_dir and session_env in env:
            yield proc, env


def signal_leader_and_targets(
    leader: psutil.Process | None, targets: set[psutil.Process], sig: signal.Signals
) -> None:
    # The group catches a process the server forks right now; only a live, verified leader's group
    # is signalled, since a dead leader's pid (and so its group id) may belong to someone else.
    if leader is not None:
        with contextlib.suppress(OSError):
            if os.getpgid(leader.pid) == leader.pid != os.getpgrp():
                os.killpg(leader.pid, sig)
    for proc in targets:
        with contextlib.suppress(psutil.Error):  # psutil refuses to signal a reused pid
            proc.send_signal(sig)


def wait_gone(procs: set[psutil.Process], timeout: float) -> set[psutil.Process]:
    """Wait until the processes are gone or zombies; return those still running."""
    deadline = time.monotonic() + timeout
    while True:
        procs = {proc for proc in procs if process_alive(proc)}
        if not procs or time.monotonic() >= deadline:
            return procs
        time.sleep(0.05)


def stop_tree(
    state: State, marked: set[psutil.Process], grace: float, kill_wait: float
) -> list[int]:
    """SIGTERM the server of ``state`` (its group and tree) and the ``marked`` processes, SIGKILL
    what is left after ``grace``; return the pids that survived. Where no cgroup holds them."""
    try:
        leader = process(int(state["pid"]), float(state["create_time"]))
    except (KeyError, TypeError, ValueError):
        leader = None
    # The tree is taken now, before orphans lose their parent.
    targets = set(marked)
    if leader is not None and process_alive(leader):
        with contextlib.suppress(psutil.Error):
            targets |= {leader, *leader.children(recursive=True)}
    else:
        leader = None
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, kill_wait)):
        if not targets:
            break
        signal_leader_and_targets(leader if leader in targets else None, targets, sig)
        targets = wait_gone(targets, wait)
    return [p.pid for p in targets]


def memory_label(memory_mb: object) -> str:
    """``4 GB``, ``1.5 GB``, ``512 MB``: a session's memory as the service page says it."""
    if not isinstance(memory_mb, int) or memory_mb <= 0:
        return "memory"
    if memory_mb < 1024:
        return f"{memory_mb} MB"
    return f"{memory_mb / 1024:.1f}".removesuffix(".0") + " GB"


def gone_message(pid: int, create_time: float, state: State) -> str:
    """Why a server is gone, in words a person reads on the session page: how it ended (known
    when this process started it) and, unless a signal ended it (its log cannot say why), the
    last lines of its log, without local paths (:func:`log_tail`)."""
    entry = children.get(pid)
    reaped = exit_codes.get(pid)
    code = None
    if entry is not None and abs(entry[0] - create_time) < 1.0:
        code = entry[1].returncode
    elif reaped is not None and abs(reaped[0] - create_time) < 1.0:
        code = reaped[1]
    # The sandbox (bwrap) exits 128 + n when the server in it was killed by signal n.
    signum = -code if code is not None and code < 0 else None
    if code is not None and 128 < code < 128 + signal.NSIG:
        signum = code - 128
    if signum is not None:
        return f"The server stopped unexpectedly: it was killed by {_signal_words(signum)}."
    message = "The server stopped unexpectedly"
    message += f": it exited with code {code}." if code is not None else "."
    tail = log_tail(str(state.get("log_path", "")))
    return f"{message} Last lines of its log:\n{tail}" if tail else message


def _signal_words(signum: int) -> str:
    try:
        return f"signal {signum} ({signal.Signals(signum).name})"
    except ValueError:
        return f"signal {signum}"


# An absolute path (not the path of a URL, which _URL takes first): a local path the person
# need not see, shortened to its last part ("/srv/portal/x/kernel.py" -> "kernel.py").
_PATH = r"(?<![\w./~-])/[^\s/:'\",;()\[\]<>]+(?:/[^\s/:'\",;()\[\]<>]*)*"
# A URL, reduced to its path: a Unix socket's URL carries the socket's path in its host part
# (http+unix://%2Fsrv%2F...), and a query may carry the server's token.
_URL = r"\b[a-z][a-z0-9+.-]*://[^\s/]*(?P<url_path>/[^\s?#]*)?\S*"
_LOCAL = re.compile(f"(?P<url>{_URL})|(?P<path>{_PATH})")
_LINE_MAX = 200


def _unlocal(match: re.Match[str]) -> str:
    if match.group("url"):
        return match.group("url_path") or "/"
    parts = [part for part in match.group("path").split("/") if part]
    return parts[-1] if parts else "/"


def log_tail(path: str, lines: int = 5, max_bytes: int = 4096) -> str:
    """The last ``lines`` non-blank lines of a server's log, for its owner: local paths shortened
    to their last part, URLs to their path (no socket path, no token), each line cut short."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, os.path.getsize(path) - max_bytes))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return cut_log_tail(text, lines)


def cut_log_tail(text: str, lines: int) -> str:
    """The last ``lines`` non-blank lines of ``text`` (a server's log, however read: a file
    here, the cluster's pod log for Kubernetes) cut as :func:`log_tail` says, so that every
    back-end hands the history the same shape."""
    if lines <= 0:
        return ""
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(_LOCAL.sub(_unlocal, line)[:_LINE_MAX] for line in tail)


def run_checked(command: list[str], timeout: float, stdin: str = "") -> None:
    """Run a system tool (useradd, iptables-restore…); a failure is a readable SpawnerError
    with the tool's last line of complaint."""
    try:
        result = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SpawnerError(f"Cannot run {command[0]}: {exc}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no message"]
        raise SpawnerError(f"{command[0]} failed ({result.returncode}): {detail[0][:300]}")


def reap_exited_children() -> int:
    """Collect the exit status of every process this OS process started for a session that has
    exited (the server, its slirp4netns, its log copier), and forget it; returns how many.

    A session's processes are children of the worker that started them, but since the queues
    were split its stop runs in another worker: without this they would stay zombies until the
    spawn worker restarts. The start watcher calls it on each pass (a waitpid(WNOHANG) each).
    """
    from sessions_app.spawners import log_copier, session_net  # they import this module

    reaped = 0
    registries: list[dict[int, Any]] = [children, session_net._running, log_copier._started]
    for registry in registries:
        for pid, entry in list(registry.items()):
            proc = entry[1] if isinstance(entry, tuple) else entry
            if proc.poll() is not None:
                registry.pop(pid, None)
                reaped += 1
                if registry is children:
                    exit_codes[pid] = (entry[0], proc.returncode)
                    while len(exit_codes) > _EXIT_CODES_KEPT:
                        del exit_codes[next(iter(exit_codes))]
    return reaped
