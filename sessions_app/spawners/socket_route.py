"""The router's own way to a local server: a hard link to the server's socket, in a folder
only root writes.

The server makes its socket in the session's socket folder, which belongs to the person's
account: they could replace ``jupyter.sock`` with a link to any socket nginx's workers may
open (another session's server, the portal's web). Once the server answers, the worker pins
the socket: a hard link to that very inode (checked: a socket of the account's, not a link)
under ``<socket dir>/.routes/``, root's and the router's group's. The router is sent there;
whatever the person does to their folder afterwards changes nothing for it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from sessions_app.spawners.sandbox import is_socket_of

# Session ids start with a letter or digit: no session's folder can be this one.
ROUTES = ".routes"


def route_link(socket_dir: Path, session_id: str) -> Path:
    return socket_dir / ROUTES / f"{session_id}.sock"


def socket_pin(socket_path: Path, link: Path, uid: int | None, router_gid: int | None) -> bool:
    """Hard-link the server's socket at ``link``; False if it is not the account's socket."""
    if is_socket_of(link, uid):
        return True
    folder = link.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.geteuid() == 0 and router_gid is not None:
        os.chown(folder, 0, router_gid)
        folder.chmod(0o750)
    else:
        folder.chmod(0o700)
    tmp = folder / f".{link.name}.{secrets.token_hex(4)}"
    try:
        # link() does not follow a symbolic link at the source: a planted link is linked as a
        # link, which the check below refuses.
        os.link(socket_path, tmp, follow_symlinks=False)
        if not is_socket_of(tmp, uid):
            return False
        os.replace(tmp, link)
    except OSError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return True


def socket_unpin(link: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
