"""Where each user's storage lives, and the folders a session gets.

Every session has three folders: the private home (read-write, the working directory), the
user's scratch folder (read-write) and ``notebooks-library`` in the home (read-only, a fresh
clone at each spawn, see :mod:`storage_app.library`). Back-ends decide how the session reaches
them (the local one links ``scratch`` into the home; see ``docs/architecture.md``).

Folders are named after the account's primary key (``u~<pk>``), not its username: a renamed
user keeps them, and a new account that takes a deleted user's name (OIDC creates users by the
provider's username) starts empty. Primary keys are never reused (PostgreSQL sequences, Django's
SQLite ``AUTOINCREMENT``) unless an operator resets a sequence or loads users with explicit keys,
so no quarantine on deletion is needed: a deleted user's folders stay behind, adopted by nobody,
until an operator removes them (the retention sweep only visits existing accounts). The ``~``
keeps these names apart from the username-named folders of earlier versions: a kept username
never contained ``~``, and a changed one had exactly 12 hex digits after it.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from storage_app.library import (
    NOT_CONFIGURED_MESSAGE,
    LibraryResult,
    Status,
    library_clone,
    library_unavailable,
)
from storage_app.library_builtin import BuiltinLibraryError, builtin_library_url, is_builtin

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

log = logging.getLogger(__name__)

LIBRARY_DIR_NAME = "notebooks-library"


def folder_name(user: AbstractBaseUser | int) -> str:
    """The user's folder name under the storage roots, ``u~<pk>`` (see the module docstring).

    ``user`` is the user or its primary key; an unsaved user (no key) is a ``ValueError``.
    """
    pk = getattr(user, "pk", user)
    if isinstance(pk, bool) or not isinstance(pk, int) or pk < 1:
        raise ValueError(f"not a saved user's primary key: {pk!r}")
    return f"u~{pk}"


def home_path(user: AbstractBaseUser | int) -> Path:
    """The user's private home under ``STORAGE_HOME_ROOT`` (``user``: the user or its pk)."""
    root: Path = settings.STORAGE_HOME_ROOT
    return root / folder_name(user)


def scratch_path(user: AbstractBaseUser | int) -> Path:
    """The user's scratch folder under ``STORAGE_SCRATCH_ROOT`` (``user``: the user or its pk)."""
    root: Path = settings.STORAGE_SCRATCH_ROOT
    return root / folder_name(user)


def home_ensure(user: AbstractBaseUser | int) -> Path:
    """Create the user's home if missing (only the owner may enter it) and return it."""
    return _private_dir_ensure(home_path(user))


def scratch_ensure(user: AbstractBaseUser | int) -> Path:
    """Create the user's scratch folder if missing (only the owner may enter it); return it."""
    return _private_dir_ensure(scratch_path(user))


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


def session_folders_prepare(user: AbstractBaseUser | int, clone: bool = True) -> SessionFolders:
    """Make sure the home and scratch exist, and clone a fresh notebooks library into the home.

    ``clone=False``: the back-end clones the library itself, in the session (the Kubernetes
    back-end's init container); the result says so. ``NOTEBOOKS_LIBRARY_URL=builtin`` (the
    library that ships with the portal, :mod:`storage_app.library_builtin`) is cloned from the
    portal's own repository; such a back-end cannot reach it and gets no library.

    Slow (a network clone, up to ``NOTEBOOKS_LIBRARY_TIMEOUT_SECONDS``): never call it inside a
    database transaction. Raises ``OSError`` only if the home or scratch cannot be made; a
    library that cannot be cloned is reported in the result instead.
    """
    home = home_ensure(user)
    scratch = scratch_ensure(user)
    library = home / LIBRARY_DIR_NAME
    url = settings.NOTEBOOKS_LIBRARY_URL
    if not clone:
        # The pod clones the library itself and cannot reach the portal's disk, where the
        # built-in library's repository lives: "builtin" means no library there (the Kubernetes
        # spawner is given no URL for it either, see sessions_app/spawners/__init__.py).
        if not url or is_builtin(url):
            return SessionFolders(home, scratch, library, NOT_CONFIGURED_MESSAGE, "not_configured")
        return SessionFolders(
            home,
            scratch,
            library,
            "The notebooks library is cloned as your server starts; if that fails, "
            "notebooks-library/CLONE-FAILED.txt says so.",
            "cloned",
        )
    result = _library_clone(library, url)
    return SessionFolders(home, scratch, library, result.message, result.status)


def _library_clone(library: Path, url: str) -> LibraryResult:
    branch = settings.NOTEBOOKS_LIBRARY_BRANCH
    if url and is_builtin(url):
        try:
            url = builtin_library_url()
        except (BuiltinLibraryError, OSError) as exc:
            log.warning("built-in notebooks library: %s", exc)
            return library_unavailable(library, "the portal could not prepare its notebooks")
        branch = ""  # the built-in repository has one branch; an operator's branch is not in it
    return library_clone(library, url, branch, settings.NOTEBOOKS_LIBRARY_TIMEOUT_SECONDS)
