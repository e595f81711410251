"""The portal's own files are its alone: var/ 0700, secrets and the database 0600, umask 077.

The database holds every TOTP seed, session key and Jupyter token; ``secret_key`` signs the
sessions; ``admin-password`` opens the first staff account. Another local account (a session's
user, on a shared machine) must not be able to read any of them, nor a file the portal writes
later (hence the umask, set by every entry point: ``manage.py``, WSGI/ASGI, the Celery worker
and beat).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600

# Files of var/ that hold secrets or data, including SQLite's companions (the write-ahead log
# holds recent rows too) and the beat's schedule; folders whose contents are the portal's alone.
SECRET_FILES = (
    "secret_key",
    "admin-password",
    "portal.sqlite3",
    "portal.sqlite3-wal",
    "portal.sqlite3-shm",
    "portal.sqlite3-journal",
    # The beat's schedule: one file, or dbm.dumb's three where no other dbm is built in.
    "celerybeat-schedule",
    "celerybeat-schedule.db",
    "celerybeat-schedule.dat",
    "celerybeat-schedule.dir",
    "celerybeat-schedule.bak",
)
PRIVATE_DIRS = ("broker",)


def set_private_umask() -> int:
    """Make every file and folder this process creates from now on private; the old umask."""
    return os.umask(PRIVATE_UMASK)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if missing, and leave it 0700 whatever the umask was."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path.chmod(DIR_MODE)


def write_private_file(path: Path, text: str) -> None:
    """Write a new secret file created 0600 from the start: never readable by others, not
    even for the moment between a write and a chmod. Fails if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def tighten_var_dir(var_dir: Path) -> list[Path]:
    """Bring an existing installation's var/ to the modes above; the paths that changed.

    Only var/ itself, its secret files and its private folders: the storage roots and the
    spawner's runtime folders inside var/ have modes of their own (their owners set them).
    Symbolic links are left alone (never follow one to chmod its target).
    """
    changed: list[Path] = []

    def tighten(path: Path, mode: int, kind: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            info = path.lstat()
            if stat.S_IFMT(info.st_mode) != kind or stat.S_IMODE(info.st_mode) & ~mode == 0:
                return
            path.chmod(stat.S_IMODE(info.st_mode) & mode)
            changed.append(path)

    tighten(var_dir, DIR_MODE, stat.S_IFDIR)
    for name in SECRET_FILES:
        tighten(var_dir / name, FILE_MODE, stat.S_IFREG)
    for name in PRIVATE_DIRS:
        folder = var_dir / name
        tighten(folder, DIR_MODE, stat.S_IFDIR)
        if folder.is_dir() and not folder.is_symlink():
            for root, dirs, files in os.walk(folder):
                for entry in dirs:
                    tighten(Path(root) / entry, DIR_MODE, stat.S_IFDIR)
                for entry in files:
                    tighten(Path(root) / entry, FILE_MODE, stat.S_IFREG)
    return changed
