"""Where a local server's socket lives, and the router's own way to it: a hard link to the
server's socket, in a folder only root writes.

Each session's socket folder (``<socket dir>/<session id>/``) belongs to the session's account
with the router's group, setgid, mode 2750 (:func:`socket_folder_prepare`): only the person's
processes and the router (nginx) can open the socket in it.

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


def default_socket_dir(runtime_dir: Path) -> Path:
    """``/run/jupyter-portal`` as root (short, and outside the portal's private var/), else a
    folder beside the runtime directory."""
    return Path("/run/jupyter-portal") if os.geteuid() == 0 else Path(runtime_dir) / "sockets"


def make_private_dir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)  # mkdir's mode passes through the umask


def socket_folder_prepare(
    socket_dir: Path, session_id: str, owner: tuple[int, int] | None, router_gid: int | None
) -> None:
    """Make the session's socket folder: ``owner``'s (uid, gid; None: root's), the router's
    group's. Raises OSError."""
    socket_dir.mkdir(parents=True, exist_ok=True)
    session_sockets = socket_dir / session_id
    if os.geteuid() != 0:
        # Not root: the router runs as the portal's own user, who owns the folder.
        make_private_dir(session_sockets)
        return
    uid, gid = owner or (0, 0)
    # Root's, and others may only pass through it to the folder they can open.
    os.chmod(socket_dir, 0o711)
    session_sockets.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(session_sockets, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, uid, gid if router_gid is None else router_gid)
        # setgid: the socket the server makes in it gets the router's group (not the
        # account's own), so that its mode 0660 lets the router connect.
        os.fchmod(fd, 0o700 if router_gid is None else 0o2750)
    finally:
        os.close(fd)


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
