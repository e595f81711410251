"""What a local session runs: its command line, its environment, what its sandbox holds.

The command, from the outside in: the deadline's supervisor (:mod:`.deadline`, root's, keeps the
session's time limit with no portal process), then in multi-user mode bwrap and setpriv
(:mod:`.sandbox`), then :mod:`.session_boot` as the session's account, which execs the server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sessions_app.spawners import limits
from sessions_app.spawners.base import SpawnRequest
from sessions_app.spawners.jupyter_args import server_args
from sessions_app.spawners.os_accounts import SessionAccount
from sessions_app.spawners.sandbox import BOOT_DIR, SandboxSpec
from sessions_app.spawners.session_files import jupyter_runtime_dir
from sessions_app.spawners.software import SessionSoftware, session_variables

# Every process of a session carries these (a stop without a cgroup finds them by them).
SESSION_ENV = "JUPYTER_PORTAL_SESSION_ID"
RUNTIME_ENV = "JUPYTER_PORTAL_RUNTIME_DIR"
# The user's scratch folder, as the session sees it from the home.
SCRATCH_LINK = "scratch"
LIBRARY_NAME = "notebooks-library"
# Kernels' ZMQ ipc files: in the sandbox's private /tmp (ipc paths must stay under ~107 bytes).
SANDBOX_RUNTIME_DIR = "/tmp/jupyter-runtime"
_BOOT_FILES = ("session_boot.py", "user_python.py")
# Jupyter settings of the router's (sessions_app/spawners/), copied into the sandbox too.
SERVER_CONFIG = "jupyter_server_config.py"
_HERE = Path(__file__).resolve().parent
# One file for both back-ends: the Kubernetes session image copies it to /etc/jupyter/.
_SERVER_CONFIG_SOURCE = _HERE.parents[1] / "images" / "session" / SERVER_CONFIG


def boot_command(
    software: SessionSoftware,
    command: list[str],
    socket_path: Path,
    request: SpawnRequest,
    home: Path,
    scratch: Path | None,
    account: SessionAccount | None,
) -> list[str]:
    """session_boot.py, then the server: what runs as the session's account."""
    boot_settings = {
        "home": str(home),
        "scratch": "" if scratch is None else str(scratch),
        "scratch_link": SCRATCH_LINK,
        "user_python": True,
    }
    boot_dir = _HERE if account is None else BOOT_DIR
    # The router's Jupyter settings (no token in the pages), where the router ships them.
    config = _SERVER_CONFIG_SOURCE if account is None else BOOT_DIR / SERVER_CONFIG
    server = [*command, *server_args(socket_path, request.base_url, home, account, config)]
    argv = [str(software.python), "-E", "-s", str(boot_dir / "session_boot.py")]
    return [*argv, json.dumps(boot_settings), "--", *server]


def sandbox_spec(
    request: SpawnRequest,
    account: SessionAccount,
    home: Path,
    scratch: Path | None,
    software: SessionSoftware,
    socket_folder: Path,
) -> SandboxSpec:
    library = None
    if request.library_dir is not None:
        library = Path(request.library_dir).absolute()
    return SandboxSpec(
        account=account,
        home=home,
        socket_dir=socket_folder,
        scratch=scratch,
        library=library,
        library_target=home / LIBRARY_NAME,
        software=software.prefixes,
        hidden=software.hidden,
        own_network=True,
        files={
            **{BOOT_DIR / name: (_HERE / name).read_bytes() for name in _BOOT_FILES},
            BOOT_DIR / SERVER_CONFIG: _SERVER_CONFIG_SOURCE.read_bytes(),
        },
    )


def session_environment(
    request: SpawnRequest,
    software: SessionSoftware,
    home: Path,
    scratch: Path | None,
    token: str,
    account: SessionAccount | None,
    cgroup: limits.SessionCgroup | None,
    public_url: str,
    runtime_dir: Path,
    socket_dir: Path,
) -> dict[str, str]:
    env = session_variables(software, home, scratch, public_url, dict(os.environ))
    if cgroup is None:
        # glibc reserves 64 MB of address space per thread arena; under RLIMIT_AS those
        # reservations, not memory in use, would eat the session's limit.
        env["MALLOC_ARENA_MAX"] = "2"
    if account is not None:
        env.update(USER=account.name, LOGNAME=account.name, SHELL="/bin/bash")
        env["JUPYTER_RUNTIME_DIR"] = SANDBOX_RUNTIME_DIR
    else:
        # Not the home's: the socket folder goes with the session (session_files.py), and
        # with it the files of a server or kernel that could not remove its own.
        env["JUPYTER_RUNTIME_DIR"] = str(jupyter_runtime_dir(socket_dir, request.session_id))
    # Jupyter reads its token from here; on the command line any local user could read it.
    env["JUPYTER_TOKEN"] = token
    env[SESSION_ENV] = request.session_id
    env[RUNTIME_ENV] = str(runtime_dir)
    return env
