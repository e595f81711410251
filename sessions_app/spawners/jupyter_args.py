"""The local server's command line: the program, and the arguments that make it a session's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sessions_app.spawners.base import SpawnerError
from sessions_app.spawners.os_accounts import SessionAccount


def resolve_command(command: list[str], software_bin: Path) -> list[str]:
    """Resolve a relative program against the session software's bin, then PATH."""
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise SpawnerError(f"Invalid server command {command!r}.")
    program = command[0]
    if not os.path.isabs(program):
        in_software = software_bin / program
        found = str(in_software) if os.access(in_software, os.X_OK) else shutil.which(program)
        if found is None:
            raise SpawnerError(f"Cannot find the server program {program!r}.")
        program = found
    return [program, *command[1:]]


def server_args(
    socket_path: Path,
    base_url: str,
    home: Path,
    account: SessionAccount | None,
    config: Path | None = None,
) -> list[str]:
    args = [
        "--no-browser",
        # A Unix socket only: no TCP port to reserve, collide on or reach from elsewhere.
        f"--ServerApp.sock={socket_path}",
        # The router's group may connect (the folder keeps everyone else out).
        "--ServerApp.sock_mode=0660",
        f"--ServerApp.base_url={base_url}",
        f"--ServerApp.root_dir={home}",
        # The Host check defends TCP servers on loopback against DNS rebinding; this server is
        # reached through the router only, which forwards the portal's own host name.
        "--ServerApp.allow_remote_access=True",
    ]
    if config is not None:
        args.append(f"--config={config}")
    if account is not None:
        # The packet filter refuses the session's loopback traffic: kernels use ZMQ over
        # Unix sockets in the sandbox's private /tmp instead of TCP on 127.0.0.1.
        args.append("--KernelManager.transport=ipc")
    elif os.geteuid() == 0:
        # Jupyter refuses to run as root unless told (single-user mode as root).
        args.append("--ServerApp.allow_root=True")
    return args
