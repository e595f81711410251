"""A running local session's spawner state, as the local back-end leaves it once the server
answers: its socket pinned for the router (sessions_app/spawners/socket_route.py)."""

from __future__ import annotations

import grp
import os
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sessions_app.spawners import get_spawner
from sessions_app.spawners.local import LocalProcessSpawner
from sessions_app.spawners.socket_route import route_link, socket_pin

# Sockets standing in for servers when no real one is given: kept open for the test run.
_listeners: list[socket.socket] = []


def server_socket() -> Path:
    """A listening Unix socket in a new folder (a stand-in for a server's)."""
    path = Path(tempfile.mkdtemp(prefix="jlp-sock-")) / "jupyter.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    _listeners.append(listener)
    return path


def pinned_state(token: str, socket_path: Path | None = None) -> dict[str, Any]:
    """The spawner state of a running server on ``socket_path`` (a stand-in if None)."""
    server = socket_path or server_socket()
    session_id = uuid.uuid4().hex
    spawner = get_spawner()
    assert isinstance(spawner, LocalProcessSpawner)
    # nginx's workers (www-data when root) must enter the folder of pinned sockets.
    router_gid = grp.getgrnam("www-data").gr_gid if os.geteuid() == 0 else None
    assert socket_pin(server, route_link(spawner.socket_dir, session_id), None, router_gid)
    return {"socket": str(server), "token": token, "session_id": session_id}


def pinned_upstream(state: dict[str, Any]) -> str:
    """What the forward-auth answers as ``X-Jupyter-Upstream`` for this state."""
    spawner = get_spawner()
    assert isinstance(spawner, LocalProcessSpawner)
    return f"unix:{route_link(spawner.socket_dir, state['session_id'])}"
