"""Safe deletion: the files a scan selected and nothing else (:func:`remove_entries`), or a
whole tree (:func:`remove_tree`), never following a symbolic link, even if the tree changes in
between. The scratch cleanups, the private storage retention and the notebooks library all
delete through this module.

A cleanup runs with more rights than the user whose files it removes, over a tree that user
can change at any moment. So every removal walks from the root again, one name at a time,
relative to directory file descriptors opened with ``O_NOFOLLOW | O_DIRECTORY``: a folder on
the path that has become a symlink since the scan stops the walk (``symlink_in_path``), so a
removal never reaches outside the tree. The last name is ``lstat``-ed through the folder's
descriptor and removed only if it is still a regular file with the scanned device, inode, size
and modification time; otherwise it is skipped with a reason. Nothing here raises for a file:
every entry gets a :class:`~storage_app.fs_types.Removal`.

Reasons a file was not removed (``Removal.reason``; ``""`` when it was):

``dry_run``
    Every check passed; a real run would have removed it (see *Dry run* below).
``vanished``
    Nothing by that name any more (the file, a folder on its path, or the root is gone).
``changed``
    Something else is there now: another inode, size or modification time, or a folder on the
    path is no longer a folder.
``not_regular``
    The name is now a symlink, a folder, a FIFO, … (a symlink is never followed, and its
    target is left alone).
``symlink_in_path``
    The root or a folder on the path is a symlink now.
``error: bad path``
    ``rel_path`` is empty, absolute, has an empty, ``.`` or ``..`` component, or a NUL byte.
``error: <strerror>``
    The system refused (``Permission denied``, ``Device or resource busy``, …).

Dry run
    ``dry_run=True`` makes every check, opens the same folders, and unlinks nothing. A file
    that would have been removed comes back as ``removed=False, reason="dry_run"``, so
    ``removed`` always means "this file is gone now" and a dry run's results can never be
    mistaken for removals (recorded in the history, or counted as freed space). A caller that
    wants to know what a real run would free counts ``removed or reason == DRY_RUN``
    (:func:`would_remove`). The answer holds for the tree as it was at that moment.

The race that remains
    Between the final ``lstat`` and ``unlink`` the user can replace the name with another file
    (or symlink, or hard link), and POSIX has no "unlink this name only if it is this inode".
    The window is two system calls long, and the folder's descriptor pins the folder itself:
    whatever gets removed instead is a name *in that same folder*, which the walk reached from
    the root without following a symlink. Unlinking a name removes that directory entry only:
    a symlink's target, or the other names of a hard-linked file, are untouched. So the worst
    a user racing us can achieve is losing a file of their own that they put there themselves;
    they can never make us remove anything outside the tree. (If the user moves a folder out
    of the tree while we hold its descriptor, the file we remove is still the very inode the
    scan selected.)

Hard links
    Removing a file removes one name. Other names of the same inode (inside the tree or out)
    keep the data, so removing a name of a file with several links frees nothing until the
    last one goes.

Only files are removed, never folders: folders emptied by a cleanup stay (pruning empty folders
would be a separate, later feature with its own checks). The root path itself is trusted
configuration: only its last component is opened with ``O_NOFOLLOW``.

Whole trees
    :func:`remove_tree` deletes one entry of a folder and everything in it (a home past its
    retention, a notebooks library being replaced) with ``shutil.rmtree(name, dir_fd=…)``:
    file-descriptor based, never following a link, also one swapped in meanwhile, nothing opened
    outside the folder. Read-only folders (the library is 0555, users chmod their own) are made
    writable through ``O_PATH | O_NOFOLLOW`` descriptors (:func:`make_folder_writable`) and the
    deletion tried once more.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable, Generator, Iterable
from typing import Any

from storage_app.fs_types import FileEntry, Removal, path_text

__all__ = [
    "BAD_PATH",
    "CHANGED",
    "DRY_RUN",
    "NOT_REGULAR",
    "SYMLINK_IN_PATH",
    "VANISHED",
    "make_folder_writable",
    "remove_entries",
    "remove_entry",
    "remove_tree",
    "would_remove",
]

DRY_RUN = "dry_run"
VANISHED = "vanished"
CHANGED = "changed"
NOT_REGULAR = "not_regular"
SYMLINK_IN_PATH = "symlink_in_path"
BAD_PATH = "error: bad path"

# O_NOFOLLOW: a symlink in the walk fails the open instead of being followed (the kernel
# reports ENOTDIR, as O_DIRECTORY is checked first, or ELOOP). O_CLOEXEC: no descriptor leaks
# into a process a worker might start meanwhile (Python sets it anyway; say so explicitly).
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# On Linux rmtree works with directory file descriptors (openat, fstat/samestat) and never
# follows a symlink, also one swapped in during the deletion. remove_tree depends on it.
assert shutil.rmtree.avoids_symlink_attacks, "shutil.rmtree must be symlink-attack resistant"


class _Skip(Exception):
    """The walk stopped before the file; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def would_remove(removal: Removal) -> bool:
    """Whether the file is gone (real run) or would be (dry run)."""
    return removal.removed or removal.reason == DRY_RUN


def remove_entry(
    root: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    entry: FileEntry,
    *,
    dry_run: bool = False,
) -> Removal:
    """Remove ``entry`` (its ``rel_path`` under ``root``) if it is still the file the scan saw.

    Never raises for file-system reasons; the :class:`Removal` says what happened.
    """
    try:
        root_fd = _open_root(root)
    except _Skip as skip:
        return Removal(entry=entry, removed=False, reason=skip.reason)
    try:
        return _remove_under(root_fd, entry, dry_run=dry_run)
    finally:
        os.close(root_fd)


def remove_entries(
    root: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    entries: Iterable[FileEntry],
    *,
    dry_run: bool = False,
    stop_when: Callable[[Removal], bool] | None = None,
) -> Generator[Removal, None, None]:
    """Remove each of ``entries`` in turn, as :func:`remove_entry` would, yielding a Removal each.

    ``entries`` is consumed lazily. After yielding a removal for which ``stop_when`` is true
    (e.g. usage is now under the low-water mark) it stops without taking another entry.
    The root is opened once, when iteration starts; if it cannot be (a symlink, gone, …),
    every entry is skipped with that reason. Each entry walks its folders from the root again
    (no descriptor is kept for the next entry: correctness over speed, and the walk is a few
    ``openat`` calls against one ``unlink``). If you stop consuming it early yourself, close it
    (``.close()`` or ``contextlib.closing``) so that the root's descriptor is released at once.
    """
    root_fd: int | None = None
    root_skip = ""
    try:
        root_fd = _open_root(root)
    except _Skip as skip:
        root_skip = skip.reason
    try:
        for entry in entries:
            if root_fd is None:
                removal = Removal(entry=entry, removed=False, reason=root_skip)
            else:
                removal = _remove_under(root_fd, entry, dry_run=dry_run)
            # Decided before yielding, so stopping does not depend on how the caller iterates.
            stop = stop_when is not None and stop_when(removal)
            yield removal
            if stop:
                return
    finally:
        if root_fd is not None:
            os.close(root_fd)


def _open_root(root: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> int:
    path = os.fsencode(root)
    try:
        return os.open(path, _DIR_FLAGS)
    except OSError as error:
        raise _Skip(_open_failure(error, path, None)) from None


def _remove_under(root_fd: int, entry: FileEntry, *, dry_run: bool) -> Removal:
    parts = _split(entry.rel_path)
    if parts is None:
        return Removal(entry=entry, removed=False, reason=BAD_PATH)
    folders, name = parts
    fd = root_fd  # the folder we are in; every descriptor but the root's is ours to close
    try:
        for folder in folders:
            try:
                child = os.open(folder, _DIR_FLAGS, dir_fd=fd)
            except OSError as error:
                raise _Skip(_open_failure(error, folder, fd)) from None
            parent, fd = fd, child
            if parent != root_fd:
                os.close(parent)
        reason = _check_and_unlink(fd, name, entry, dry_run=dry_run)
    except _Skip as skip:
        reason = skip.reason
    finally:
        if fd != root_fd:
            os.close(fd)
    return Removal(entry=entry, removed=reason == "", reason=reason)


def _check_and_unlink(fd: int, name: bytes, entry: FileEntry, *, dry_run: bool) -> str:
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return VANISHED
    except OSError as error:
        return _error(error)
    if not stat.S_ISREG(st.st_mode):
        return NOT_REGULAR
    seen = (entry.dev, entry.ino, entry.size, entry.mtime_ns)
    if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != seen:
        return CHANGED
    if dry_run:
        return DRY_RUN
    # The unavoidable window (module docstring): the name may be replaced right here, but only
    # within this folder, which ``fd`` pins.
    try:
        os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        return VANISHED
    except OSError as error:
        return _error(error)
    return ""


def _split(rel_path: bytes) -> tuple[list[bytes], bytes] | None:
    """``rel_path`` as (folders, file name), or None if it could step outside or is malformed."""
    if not isinstance(rel_path, bytes) or not rel_path or b"\0" in rel_path:
        return None
    parts = rel_path.split(b"/")  # a leading or doubled "/" gives an empty part
    if any(part in (b"", b".", b"..") for part in parts):
        return None
    return parts[:-1], parts[-1]


def _open_failure(error: OSError, name: bytes, dir_fd: int | None) -> str:
    """The reason a folder (or the root) on the way could not be opened."""
    if error.errno == errno.ENOENT:
        return VANISHED
    if error.errno not in (errno.ENOTDIR, errno.ELOOP):
        return _error(error)
    # Not a folder now: say whether it is a symlink (a swap) or something else. Only the
    # reason depends on this second look; the walk has stopped either way.
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return VANISHED
    except OSError as second:
        return _error(second)
    return SYMLINK_IN_PATH if stat.S_ISLNK(st.st_mode) else CHANGED


def _error(error: OSError) -> str:
    return f"error: {error.strerror or error}"


# --- Whole trees ----------------------------------------------------------------------------


def remove_tree(root: str | os.PathLike[str], name: str) -> list[str]:
    """Delete ``root/name`` (a folder with everything in it, or a file or a link: the entry
    itself, never its target) with every path relative to a descriptor of ``root``: nothing
    outside ``root`` is opened, a symlink is never followed. Returns the errors, as text; none
    when the entry is gone (or was not there).
    """
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a single folder name: {name!r}")
    errors: list[str] = []

    def onerror(function: Any, path: str, exc_info: Any) -> None:
        errors.append(f"{path_text(os.fsencode(path))}: {exc_info[1]}")

    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    try:
        try:
            st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
        except FileNotFoundError:
            return []
        if not stat.S_ISDIR(st.st_mode):
            try:
                os.unlink(name, dir_fd=root_fd)
            except FileNotFoundError:
                pass
            except OSError as error:
                errors.append(f"{path_text(os.fsencode(name))}: {error}")
            return errors
        shutil.rmtree(name, onerror=onerror, dir_fd=root_fd)
        if errors and _exists_in(root_fd, name):
            # Read-only folders (the notebooks library is 0555, users chmod their own): make
            # every folder writable, never through a link, and try once more.
            errors.clear()
            _folders_writable(root_fd, name)
            shutil.rmtree(name, onerror=onerror, dir_fd=root_fd)
    except RecursionError:
        # rmtree and fwalk recurse once per folder level: a tree deeper than the interpreter
        # allows is left (partly) in place and reported.
        errors.append(f"{name}: the folder tree is too deep to delete")
    finally:
        os.close(root_fd)
    return errors


def make_folder_writable(path: str | os.PathLike[str], dir_fd: int | None = None) -> None:
    """Give the owner full rights (0700) on the folder at ``path`` (in ``dir_fd``), never on
    what a link there points to; anything else, or a failure, is left for the removal to report.

    Linux has no ``lchmod``: the entry is opened with ``O_PATH | O_NOFOLLOW`` (a link opens as
    the link itself), checked to be a folder, and changed through ``/proc/self/fd``, which
    names exactly the opened inode.
    """
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.chmod(f"/proc/self/fd/{fd}", 0o700)
    except OSError:
        pass  # rmtree then reports what it cannot remove
    finally:
        os.close(fd)


def _exists_in(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _folders_writable(root_fd: int, name: str) -> None:
    """Make ``name`` and every folder in it writable, each before ``os.fwalk`` enters it (a
    folder the user made unreadable could not be listed); ``os.fwalk`` does not enter a folder
    swapped for a link."""
    make_folder_writable(name, root_fd)
    for _top, folders, _files, dir_fd in os.fwalk(name, follow_symlinks=False, dir_fd=root_fd):
        for folder in folders:
            make_folder_writable(folder, dir_fd)
