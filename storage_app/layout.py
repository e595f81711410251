"""Where each user's storage lives, and the folders a session gets.

Every session has three folders: the private home (read-write, the working directory), the
user's scratch folder (read-write) and ``notebooks-library`` in the home (read-only, a fresh
clone at each spawn, see :mod:`storage_app.library`). Back-ends decide how the session reaches
them (the local one links ``scratch`` into the home; see ``docs/architecture.md``).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from storage_app.library import Status, library_clone

LIBRARY_DIR_NAME = "notebooks-library"

# What Django's default username validator allows, in ASCII: such names are their own folder
# name. Anything else gets a hash suffix after "~", which no kept name contains, so a changed
# name never equals a kept one, and two changed names differ by their hashes.
_KEPT = re.compile(r"[A-Za-z0-9@+_-][A-Za-z0-9.@+_-]{0,149}")
_UNSAFE = re.compile(r"[^A-Za-z0-9.@+_-]")
_READABLE_MAX = 64
_HASH_CHARS = 12  # 48 bits: a collision needs ~16 million odd names sharing a readable part


def folder_name(username: str) -> str:
    """The user's folder name under the storage roots: injective, never hidden, never a path.

    A name Django's default validator accepts (ASCII letters, digits, ``@.+-_``) is kept as it
    is unless it starts with a dot; any other gets a readable part and a short hash of the name.
    """
    if _KEPT.fullmatch(username):
        return username
    readable = _UNSAFE.sub("_", username)[:_READABLE_MAX]
    readable = re.sub(r"^\.", "_", readable) or "_"
    digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{readable}~{digest[:_HASH_CHARS]}"


def home_path(username: str) -> Path:
    """The user's private home under ``STORAGE_HOME_ROOT``."""
    root: Path = settings.STORAGE_HOME_ROOT
    return root / folder_name(username)


def scratch_path(username: str) -> Path:
    """The user's scratch folder under ``STORAGE_SCRATCH_ROOT``."""
    root: Path = settings.STORAGE_SCRATCH_ROOT
    return root / folder_name(username)


def home_ensure(username: str) -> Path:
    """Create the user's home if missing (only the owner may enter it) and return it."""
    return _private_dir_ensure(home_path(username))


def scratch_ensure(username: str) -> Path:
    """Create the user's scratch folder if missing (only the owner may enter it); return it."""
    return _private_dir_ensure(scratch_path(username))


def _private_dir_ensure(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        # The roots belong to the portal; something else in a user's place is an operator's
        # mistake to look at, not something to remove.
        raise NotADirectoryError(f"{path} is not a folder")
    if stat.S_IMODE(st.st_mode) != 0o700:
        path.chmod(0o700)  # mkdir's mode passes through the umask; old folders may be wider
    return path


@dataclass(frozen=True)
class SessionFolders:
    """The folders of one session and what became of its library at this spawn."""

    home: Path
    scratch: Path
    library: Path
    library_message: str
    library_status: Status


def session_folders_prepare(username: str) -> SessionFolders:
    """Make sure the home and scratch exist, and clone a fresh notebooks library into the home.

    Slow (a network clone, up to ``NOTEBOOKS_LIBRARY_TIMEOUT_SECONDS``): never call it inside a
    database transaction. Raises ``OSError`` only if the home or scratch cannot be made; a
    library that cannot be cloned is reported in the result instead.
    """
    home = home_ensure(username)
    scratch = scratch_ensure(username)
    library = home / LIBRARY_DIR_NAME
    result = library_clone(
        library,
        settings.NOTEBOOKS_LIBRARY_URL,
        settings.NOTEBOOKS_LIBRARY_BRANCH,
        settings.NOTEBOOKS_LIBRARY_TIMEOUT_SECONDS,
    )
    return SessionFolders(home, scratch, library, result.message, result.status)
