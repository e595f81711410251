"""A local session's files on the portal's side: where each lives, and their removal at its end.

Per session the portal keeps, root's (the portal user's in single-user mode):

- the state file ``<runtime dir>/sessions/<id>.json`` (0600: it holds the token), by which a
  worker started later finds the session (:func:`saved_states`);
- the server's log ``<runtime dir>/logs/<id>.log``, written by :mod:`.log_copier`: its last
  lines explain a server that died;
- the socket folder ``<socket dir>/<id>/`` with the server's socket, and in single-user mode
  Jupyter's runtime files (the server's ``jpserver-*`` files, the kernels' connection files),
  which would otherwise pile up in the person's home after every server that did not exit
  cleanly (multi-user sessions keep them in the sandbox's private ``/tmp``);
- the router's link to the socket, ``<socket dir>/.routes/<id>.sock`` (:mod:`.socket_route`);
- the cgroup, which :mod:`.limits` removes.

:func:`session_files_remove` takes them all away when the session ends: after a stop, an expiry,
a failed start or a death (the caller polls first, so the log's tail is in the message the
session's row records before the log goes). A session that no stop reaches (its start's worker
was lost before the row had its state, and its server has ended since) is found by its state
file: its files go :data:`LEFTOVER_SECONDS` after they last changed. Nothing is rotated: nothing
is left to rotate.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from sessions_app.spawners import log_copier
from sessions_app.spawners.base import State
from sessions_app.spawners.socket_route import route_link, socket_unpin

STATES = "sessions"
LOGS = "logs"
# Jupyter's runtime folder of a single-user session, in its socket folder.
JUPYTER_RUNTIME = "runtime"
# How long the files of a session whose processes ended stay when no stop removes them.
LEFTOVER_SECONDS = 24 * 3600


def state_path(runtime_dir: Path, session_id: str) -> Path:
    return runtime_dir / STATES / f"{session_id}.json"


def log_path(runtime_dir: Path, session_id: str) -> Path:
    return runtime_dir / LOGS / f"{session_id}.log"


def jupyter_runtime_dir(socket_dir: Path, session_id: str) -> Path:
    return socket_dir / session_id / JUPYTER_RUNTIME


def idle_seconds(runtime_dir: Path, session_id: str) -> float:
    """How long ago the session's state file or log last changed (the log until its end)."""
    newest = 0.0
    for path in (state_path(runtime_dir, session_id), log_path(runtime_dir, session_id)):
        with contextlib.suppress(OSError):
            newest = max(newest, path.stat().st_mtime)
    return time.time() - newest


def state_save(runtime_dir: Path, state: State) -> None:
    """Write the state file (0600: it holds the token) by a rename, never half."""
    path = state_path(runtime_dir, state["session_id"])
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(state, file)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def saved_states(runtime_dir: Path) -> Iterator[State]:
    """The state files of ``runtime_dir``, in the order of their session ids; unreadable ones
    are skipped."""
    with contextlib.suppress(OSError):
        entries = sorted(os.scandir(runtime_dir / STATES), key=lambda e: e.name)
        for entry in entries:
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                with open(entry.path, encoding="utf-8") as file:
                    state = json.load(file)
                str(state["session_id"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            yield state


def session_files_remove(
    runtime_dir: Path, socket_dir: Path, session_id: str, copier: object = None
) -> None:
    """Remove every file the portal keeps for the session: the router's link first (no request
    reaches a folder being removed), the socket folder, the log (its copier ended first), the
    state file last, so that a removal cut short still leaves the session findable."""
    socket_unpin(route_link(socket_dir, session_id))
    # The folder is the session's account's: rmtree never follows a link found in it.
    shutil.rmtree(socket_dir / session_id, ignore_errors=True)
    log_copier.remove(copier, log_path(runtime_dir, session_id))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_path(runtime_dir, session_id))
