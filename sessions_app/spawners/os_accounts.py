"""An OS account per portal account, for the local back-end's multi-user mode.

Sessions of portal account ``pk`` run as ``<prefix><pk>`` with uid = gid = ``uid_min + pk``: the
number follows from the key alone, so every worker (and every machine sharing the storage)
agrees on it without a table, and a uid never moves to another person (primary keys are not
reused, see ``storage_app.layout``). Accounts have no password (``useradd`` locks it), the shell
``/usr/sbin/nologin`` and no home made by ``useradd``: the portal's own home folder is their
home, set in the session's environment.

Folders the account owns are handed over without following the user's links (fd-relative
``lchown`` over ``os.fwalk``); anything the portal writes *inside* them afterwards is written by
the account itself (in the session's bootstrap), never by root.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import logging
import os
import pwd
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sessions_app.spawners.base import SpawnerError
from sessions_app.spawners.processes import run_checked

logger = logging.getLogger(__name__)

NOLOGIN = "/usr/sbin/nologin"
# One lock for the whole machine: useradd refuses to run while another holds /etc/passwd's
# lock, and two workers creating the same account must not both try.
LOCK_PATHS = (
    Path("/run/lock/jupyter-portal-accounts.lock"),
    Path("/run/jupyter-portal-accounts.lock"),
)
_USERADD_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class SessionAccount:
    """The OS account of one portal account."""

    name: str
    uid: int
    gid: int


def account_for(user_id: int, prefix: str, uid_min: int, uid_max: int) -> SessionAccount:
    """The account of portal account ``user_id``; a key past the range is a SpawnerError."""
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id < 1:
        raise SpawnerError(f"No OS account for portal account {user_id!r}.")
    uid = uid_min + user_id
    if uid > uid_max:
        raise SpawnerError(
            f"Portal account {user_id} has no OS account: uids {uid_min}-{uid_max} "
            "(LOCAL_SESSION_UID_MIN/MAX) are all taken; ask an administrator to widen the range."
        )
    return SessionAccount(f"{prefix}{user_id}", uid, uid)


def account_ensure(account: SessionAccount) -> SessionAccount:
    """Create the account (and its group) if missing; idempotent and safe across workers.

    An existing account with the right uid is reused; a name or number taken by someone else
    is a SpawnerError that says which.
    """
    if _matches(account):
        return account
    with _machine_lock():
        if _matches(account):
            return account
        if not _group_matches(account):
            _run(["groupadd", "--gid", str(account.gid), account.name])
        _run(
            [
                "useradd",
                "--uid", str(account.uid),
                "--gid", str(account.gid),
                "--no-user-group",
                "--no-create-home",
                "--home-dir", "/nonexistent",
                "--shell", NOLOGIN,
                # No sparse lastlog/faillog entries up to uid 200000+.
                "--no-log-init",
                "--comment", "Jupyter portal session account",
                account.name,
            ]
        )  # fmt: skip
        if not _matches(account):
            raise SpawnerError(f"The OS account {account.name} could not be created.")
    logger.info("Created OS account %s (uid %s)", account.name, account.uid)
    return account


def _matches(account: SessionAccount) -> bool:
    """True if the account exists as expected, False if it is missing; a clash raises."""
    try:
        by_name = pwd.getpwnam(account.name)
    except KeyError:
        by_name = None
    try:
        by_uid = pwd.getpwuid(account.uid)
    except KeyError:
        by_uid = None
    if by_name is None and by_uid is None:
        return False
    if by_name is None or by_name.pw_uid != account.uid or by_name.pw_gid != account.gid:
        taken = by_uid.pw_name if by_uid is not None else by_name.pw_name  # type: ignore[union-attr]
        raise SpawnerError(
            f"Cannot use OS account {account.name} (uid {account.uid}): the name or the uid "
            f"already belongs to the account {taken!r} with other ids; an administrator must "
            "remove or renumber it (or change LOCAL_SESSION_ACCOUNT_PREFIX / UID_MIN)."
        )
    return True


def _group_matches(account: SessionAccount) -> bool:
    try:
        by_name = grp.getgrnam(account.name)
    except KeyError:
        by_name = None
    try:
        by_gid = grp.getgrgid(account.gid)
    except KeyError:
        by_gid = None
    if by_name is None and by_gid is None:
        return False
    if by_name is None or by_name.gr_gid != account.gid:
        taken = by_gid.gr_name if by_gid is not None else account.name
        raise SpawnerError(
            f"Cannot use group {account.name} (gid {account.gid}): taken by the group "
            f"{taken!r} with another id; an administrator must remove or renumber it."
        )
    return True


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    for path in LOCK_PATHS:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            break
        except OSError:
            continue
    else:
        raise SpawnerError("Cannot create the OS accounts' lock file in /run.")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _run(command: list[str]) -> None:
    run_checked(command, _USERADD_TIMEOUT_SECONDS)


def private_dir_hand_over(path: Path, uid: int, gid: int, skip: tuple[str, ...] = ()) -> None:
    """Make ``path`` a folder of ``uid:gid``, mode 0700, creating it if missing.

    A folder that belongs to root (made by the portal, or kept from before accounts existed)
    is handed over with everything in it, without following links; names in ``skip`` at the
    top stay root's (the read-only notebooks library). A folder that already belongs to
    another account is a SpawnerError: two people must never share one.
    """
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SpawnerError(f"Cannot create {path}: {exc}") from exc
    try:
        # The path's parents belong to the portal; the folder itself must not be a link.
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SpawnerError(f"{path} is not a folder: {exc}") from exc
    try:
        st = os.fstat(fd)
        if st.st_uid not in (uid, 0):
            raise SpawnerError(
                f"{path} belongs to uid {st.st_uid}, not to this person's account (uid {uid})."
            )
        if st.st_uid == 0 and uid != 0:
            _chown_tree(fd, uid, gid, skip)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    except OSError as exc:
        raise SpawnerError(f"Cannot hand {path} over to uid {uid}: {exc}") from exc
    finally:
        os.close(fd)


def _chown_tree(top_fd: int, uid: int, gid: int, skip: tuple[str, ...]) -> None:
    """lchown everything below the open folder ``top_fd`` that root owns, except ``skip``.

    A file with several hard links is left alone: it may be a link to a file outside (made
    while sessions still ran as root), and chown would hand that file over too.
    """
    for root, dirs, files, dir_fd in os.fwalk(".", dir_fd=top_fd, follow_symlinks=False):
        if root == ".":
            dirs[:] = [name for name in dirs if name not in skip and not _skipped(name, skip)]
            files = [name for name in files if name not in skip]
        for name in [*dirs, *files]:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if st.st_uid != 0:
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    logger.warning("Not handing over a file with %s hard links", st.st_nlink)
                    continue
                os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue


def _skipped(name: str, skip: tuple[str, ...]) -> bool:
    # The library's temporary clones (``.notebooks-library.*``) are root's too.
    return any(name.startswith(f".{prefix}.") for prefix in skip)


def run_as_prefix(account: SessionAccount) -> list[str]:
    """The command prefix that drops to ``account``: no groups, no capabilities, and never
    again more privileges (a setuid program gains nothing)."""
    return [
        "setpriv",
        f"--reuid={account.uid}",
        f"--regid={account.gid}",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]
