"""Deaths of local servers seen at once: a pidfd per server, one wait on all of them.

Linux (5.3 and later) gives a file descriptor for a process (``pidfd_open``) that becomes
readable when the process ends: also for a process that is not this worker's child (a server
started before a restart, or by another worker), and also while it is a zombie that nobody has
reaped yet. :class:`PidWatch` keeps one per running server's leader (the first program of the
session: the sandbox, or the server itself) and waits on all of them in one ``epoll``: the
server-watch loop (``sessions_app.server_watch``) learns of a death within milliseconds, not at
the next reconcile.

A pid names a process only until it is reused, so each descriptor is checked against the
state's ``create_time`` right after it is opened: the descriptor then holds that very process
(a pidfd never moves to another one), and a mismatch means the server had already ended.
A state without a leader to watch (a start that a lost worker left with pid 0) is named after
every wait, so that the caller polls it once per timeout, as the default
:meth:`~.base.Spawner.wait_for_changes` does for every server.

One :class:`PidWatch` per thread (:func:`for_this_thread`): the descriptors and the selector
are the calling loop's alone.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
from collections.abc import Mapping
from typing import NamedTuple

from sessions_app.spawners.base import State
from sessions_app.spawners.processes import process


class _Leader(NamedTuple):
    pid: int
    create_time: float


class _Watched(NamedTuple):
    leader: _Leader
    fd: int


def leader_of(state: State) -> _Leader | None:
    """The state's first process, if it names one."""
    try:
        pid, create_time = int(state["pid"]), float(state["create_time"])
    except (KeyError, TypeError, ValueError):
        return None
    return _Leader(pid, create_time) if pid > 0 else None


class PidWatch:
    """The pidfds of the servers one loop watches, kept from one wait to the next."""

    def __init__(self) -> None:
        self._watched: dict[str, _Watched] = {}
        self._selector = selectors.DefaultSelector()

    def wait(self, states: Mapping[str, State], timeout: float) -> set[str]:
        """:meth:`~.base.Spawner.wait_for_changes` for local servers."""
        for key in [key for key in self._watched if key not in states]:
            self._forget(key)
        ended: set[str] = set()
        unwatched: set[str] = set()
        for key, state in states.items():
            leader = leader_of(state)
            if leader is None:
                unwatched.add(key)
                continue
            watched = self._watched.get(key)
            if watched is not None:
                if watched.leader == leader:
                    continue
                self._forget(key)  # a new state for the session: another leader
            try:
                fd = os.pidfd_open(leader.pid)
            except ProcessLookupError:
                ended.add(key)  # gone and reaped
                continue
            except OSError:
                unwatched.add(key)  # no descriptor left (EMFILE), or a kernel without pidfds
                continue
            if process(leader.pid, leader.create_time) is None:
                os.close(fd)  # the pid is another process's now: the server ended
                ended.add(key)
                continue
            self._watched[key] = _Watched(leader, fd)
            self._selector.register(fd, selectors.EVENT_READ, key)
        if not ended:
            ended = {str(selected.data) for selected, _events in self._selector.select(timeout)}
        for key in ended & self._watched.keys():
            self._forget(key)  # readable for good: asked again, it would wake every wait
        return ended | unwatched

    def close(self) -> None:
        for key in list(self._watched):
            self._forget(key)
        self._selector.close()

    def _forget(self, key: str) -> None:
        watched = self._watched.pop(key)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(watched.fd)
        os.close(watched.fd)

    def __del__(self) -> None:
        # A thread that ends drops its PidWatch (threading.local): its descriptors go with it.
        with contextlib.suppress(Exception):
            self.close()


_local = threading.local()


def for_this_thread() -> PidWatch:
    """The calling thread's :class:`PidWatch`, made at its first wait."""
    watch: PidWatch | None = getattr(_local, "watch", None)
    if watch is None:
        watch = _local.watch = PidWatch()
    return watch
