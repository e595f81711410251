"""A network of its own for each sandboxed session: a private loopback, the internet through
slirp4netns (multi-user mode).

bwrap gives the session a new network namespace (``--unshare-net``) with only ``lo``: what a
session serves on 127.0.0.1 (a dask scheduler, a web app behind jupyter-server-proxy, a kernel
that nbconvert starts) is its own, no other session and no program of the machine can reach it,
and it cannot take a port of the machine (the portal's address while the portal restarts) nor
meet another session on an abstract Unix socket (they belong to the network namespace).

The way out is slirp4netns, the user-mode network stack of rootless containers: it joins the
session's namespace, makes ``tap0`` there (10.0.2.100, gateway 10.0.2.2, DNS forwarder 10.0.2.3,
which the sandbox's ``/etc/resolv.conf`` names) and turns the session's packets into ordinary
sockets of its own on the machine. It runs as the session's account, so the packet filter on the
sessions' uids (:mod:`.netfilter`) judges every connection a session makes as before (this
machine's addresses, private ranges and SSH refused); ``--disable-host-loopback`` keeps the gateway
from leading to the machine's loopback. It runs in the session's cgroup (a stop kills it with the
rest), carries the session's markers (a stop without a cgroup finds it by them) and none of the
worker's other variables, under its own seccomp filter. To join a namespace that init's user
namespace owns it needs ``CAP_SYS_ADMIN`` (and ``CAP_NET_ADMIN`` for ``tap0``), which it keeps as
ambient capabilities: the session's own processes, without capabilities and in another PID
namespace, can neither see it nor trace it (the kernel refuses to trace a process with capabilities
the tracer lacks).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
from collections.abc import Callable

from sessions_app.spawners.base import SpawnerError
from sessions_app.spawners.os_accounts import SessionAccount

SLIRP = "slirp4netns"
# slirp4netns's DNS forwarder inside the session (its default network, 10.0.2.0/24).
RESOLV_CONF = b"nameserver 10.0.2.3\noptions edns0\n"
_READY_TIMEOUT_SECONDS = 10.0
# This worker's slirp4netns processes, to reap once a stop has killed them (pid -> process).
_running: dict[int, subprocess.Popen[bytes]] = {}


def net_problem() -> str:
    """Why sessions cannot have a network of their own here ("" when they can)."""
    if shutil.which(SLIRP) is None:
        return f"{SLIRP} is not installed (apt-get install slirp4netns)"
    return ""


def _read_within(fd: int, timeout: float) -> bytes:
    """What is written on ``fd`` until its writer closes it or ``timeout`` passes."""
    data = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return data
        chunk = os.read(fd, 4096)
        if not chunk:
            return data
        data += chunk
        if b"}" in data or data.strip() == b"1":
            return data


def sandbox_pid(info_fd: int) -> int:
    """The sandbox's first process (its namespaces'), from bwrap's ``--info-fd`` JSON."""
    try:
        data = _read_within(info_fd, _READY_TIMEOUT_SECONDS)
    finally:
        os.close(info_fd)
    try:
        return int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SpawnerError(f"The sandbox did not start: {data[:200]!r}") from exc


def connect(
    child_pid: int,
    account: SessionAccount,
    preexec: Callable[[], None] | None,
    markers: dict[str, str],
) -> int:
    """Start slirp4netns for the sandbox of ``child_pid``; returns its pid once ``tap0`` is up.

    ``markers``: the variables that mark the session's processes (local.py), so that a stop
    without a cgroup finds this one too; nothing else of the worker's environment (its
    database URL, its secrets) goes to a process that reads the session's packets.
    """
    ns_fd = os.open(f"/proc/{child_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    ready_read, ready_write = os.pipe()
    caps = "+sys_admin,+net_admin"
    argv = [
        "setpriv", f"--reuid={account.uid}", f"--regid={account.gid}", "--clear-groups",
        f"--inh-caps={caps}", f"--ambient-caps={caps}", "--",
        # --enable-seccomp: no execve, ptrace, mount, setns, unshare… once it runs (it keeps
        # its capabilities: --enable-sandbox needs root).
        SLIRP, "--configure", "--mtu=65520", "--disable-host-loopback", "--enable-seccomp",
        f"--ready-fd={ready_write}", "--netns-type=path", f"/proc/self/fd/{ns_fd}", "tap0",
    ]  # fmt: skip
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(ns_fd, ready_write),
            env={"PATH": os.environ.get("PATH", os.defpath), **markers},
            start_new_session=True,
            preexec_fn=preexec,
        )
    except OSError as exc:
        os.close(ready_read)
        raise SpawnerError(f"Cannot start {SLIRP}: {exc}") from exc
    finally:
        os.close(ns_fd)
        os.close(ready_write)
    try:
        ready = _read_within(ready_read, _READY_TIMEOUT_SECONDS)
    finally:
        os.close(ready_read)
    if ready.strip() != b"1":
        proc.kill()
        proc.wait()
        raise SpawnerError("The session's network did not come up (slirp4netns).")
    _running[proc.pid] = proc
    return proc.pid


def reap(pid: object) -> None:
    """Collect a stopped session's slirp4netns (a child of this worker; others' init reaps)."""
    proc = _running.pop(pid, None) if isinstance(pid, int) else None
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
