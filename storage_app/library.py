"""The notebooks library: a fresh, read-only, shallow clone of a git repository at each spawn.

Service rule 9. The clone goes into a hidden temporary folder beside its destination (the same
file system, so the final step is a rename), and only a complete clone replaces the previous
library: a failed or timed-out clone leaves no half clone and keeps the previous copy, if any.

``.git`` is dropped from the clone. With ``--depth 1`` it holds no history, only a second copy
of the content (which would count against the user's private quota) and the remote URL, which
may carry a deploy token that the session's user must not read; the commit is reported in the
result instead. Files become read-only (0444, or 0555 if executable), folders 0555: the
library is the portal's snapshot, not the user's working copy.

Nothing here follows a symbolic link: the previous library lives in the user's home, where the
user may have replaced anything with a link (to another user's files, to ``/etc``). Folders are
made writable through file descriptors opened without following links, and removal is
``shutil.rmtree`` relative to a folder's descriptor, which never follows them either (both
from ``storage_app.fs_remove``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from storage_app.fs_remove import make_folder_writable, remove_tree

log = logging.getLogger(__name__)

# What git may take from the worker's environment: where programs are, the language, and how to
# reach the network (proxies, certificate authorities). Not the worker's HOME or git settings.
_INHERITED_ENV = (
    "PATH",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
)
_REV_PARSE_TIMEOUT_SECONDS = 30
_REASON_MAX_CHARS = 300
# user:password@ (or token@) in a URL: never shown to users or written to logs.
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")

Status = Literal["cloned", "not_configured", "failed"]
# What the session page says when the portal offers no library (users do not configure it).
NOT_CONFIGURED_MESSAGE = "No shared notebooks are offered here."


@dataclass(frozen=True)
class LibraryResult:
    """What became of the library at one spawn; ``message`` is a sentence for the user."""

    status: Status
    message: str
    commit: str = ""


def library_clone(dest: Path, url: str, branch: str, timeout: int) -> LibraryResult:
    """Replace ``dest`` with a fresh shallow clone of ``url`` (``branch``, or the default one).

    An empty ``url`` means no library is configured (``dest`` is left as it is). Never raises:
    a spawn goes on without a library, and the result says why.
    """
    if not url:
        return LibraryResult("not_configured", NOT_CONFIGURED_MESSAGE)
    try:
        return _clone(Path(dest), url, branch, timeout)
    except Exception as exc:  # a library problem must never block the session
        log.exception("notebooks library for %s: unexpected error", dest)
        return _failed(Path(dest), _redact(f"{type(exc).__name__}: {exc}"))


def _clone(dest: Path, url: str, branch: str, timeout: int) -> LibraryResult:
    git = shutil.which("git")
    if git is None:
        return _failed(dest, "git is not installed on the portal's worker")
    prefix = f".{dest.name}."
    _remove_leftovers(dest.parent, prefix)
    # Hidden, in the destination's folder: the same file system, so that the swap is a rename.
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=dest.parent))
    try:
        clone = work / "clone"
        with tempfile.TemporaryDirectory(prefix="portal-git-home-") as git_home:
            env = git_environment(git_home)
            command = [git, "clone", "--depth=1", "--single-branch", "--no-tags", "--quiet"]
            if branch:
                command.append(f"--branch={branch}")
            error = _run(
                [*command, "--", url, str(clone)], env, timeout, "the clone took longer than"
            )
            if error:
                return _failed(dest, error)
            head = subprocess.run(
                [git, "-C", str(clone), "rev-parse", "HEAD"],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_REV_PARSE_TIMEOUT_SECONDS,
                check=False,
            )
        commit = head.stdout.strip()
        if head.returncode != 0 or not commit:
            return _failed(dest, _reason(head.stderr) or "the clone has no commit")
        _remove_tree(clone / ".git")
        _make_read_only(clone)
        _swap_in(clone, dest, work / "previous")
    finally:
        # What is left: a half clone, or the previous library moved aside. If it cannot go now,
        # the next clone removes it (as a leftover); the outcome of this one stands.
        try:
            _remove_tree(work)
        except OSError as exc:
            log.warning("notebooks library: cannot remove %s: %s", work, exc)
    where = f" (branch {branch})" if branch else ""
    log.info("notebooks library %s: cloned %s%s", dest, commit, where)
    return LibraryResult(
        "cloned",
        f"Notebooks library: cloned at commit {commit[:12]}{where}; read-only, and replaced "
        "by a fresh copy at each session start.",
        commit,
    )


def library_unavailable(dest: Path, reason: str) -> LibraryResult:
    """The result of a spawn whose library could not be prepared for cloning (``reason``, for
    people); ``dest`` is left as it is."""
    return _failed(Path(dest), _redact(reason)[:_REASON_MAX_CHARS])


def _failed(dest: Path, reason: str) -> LibraryResult:
    log.warning("notebooks library %s: clone failed: %s", dest, reason)
    kept = dest.is_dir() and not dest.is_symlink()
    then = "the copy from your previous session is kept" if kept else "this session has no library"
    return LibraryResult("failed", f"Notebooks library: clone failed ({reason}); {then}.")


def git_environment(git_home: str) -> dict[str, str]:
    """What git runs with: the worker's way to the network, none of its (or the machine's)
    git configuration (``git_home`` stands in for the home), no prompts, English."""
    env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
    env.update(
        # No system, global or user configuration: the clone is the same on every worker.
        HOME=git_home,
        XDG_CONFIG_HOME=git_home,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        # Never wait for a password: fail, and say so.
        GIT_TERMINAL_PROMPT="0",
        GIT_SSH_COMMAND="ssh -o BatchMode=yes",
        # Messages in English, as the rest of the page.
        LC_ALL="C",
    )
    return env


def _run(command: list[str], env: dict[str, str], timeout: int, too_slow: str) -> str:
    """Run ``command``; return "" on success, else why it failed (for people)."""
    with tempfile.TemporaryFile() as stderr:
        try:
            # Its own process group: on timeout the helpers git started (remote-https,
            # index-pack) are killed with it.
            proc = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError as exc:
            return _redact(f"cannot run git: {exc}")
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return f"{too_slow} {timeout} seconds"
        stderr.seek(0)
        text = stderr.read().decode(errors="replace")
    return "" if code == 0 else _reason(text) or f"git exited with code {code}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # SIGKILL: git's helpers run no more code after it, so none writes into the half clone
    # that is removed next.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _reason(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    chosen = (fatal or lines[-1:] or [""])[0]
    chosen = re.sub(r"^(fatal|error):\s*", "", chosen)
    return _redact(chosen)[:_REASON_MAX_CHARS]


def _redact(text: str) -> str:
    return _CREDENTIALS.sub("***@", text)


def _swap_in(clone: Path, dest: Path, previous: Path) -> None:
    """Put ``clone`` at ``dest``; whatever was at ``dest`` goes to ``previous`` (to be removed)."""
    moved = False
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISDIR(st.st_mode):
            # Moving a folder to another parent needs write permission on the folder itself.
            make_folder_writable(dest)
            os.rename(dest, previous)
            moved = True
        else:
            # A link or a file the user put there: remove the entry itself, never its target.
            os.unlink(dest)
    try:
        os.rename(clone, dest)
    except OSError:
        if moved:
            os.rename(previous, dest)
        raise
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, 0o555)
    finally:
        os.close(fd)


def _make_read_only(top: Path) -> None:
    """Files 0444 (0555 if executable), folders below ``top`` 0555; links are left alone."""
    for root, _dirs, files, dir_fd in os.fwalk(top, topdown=False, follow_symlinks=False):
        for name in files:
            try:
                fd = os.open(
                    name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
                )
            except OSError:
                continue  # a symbolic link (ELOOP): its mode means nothing
            try:
                mode = os.fstat(fd).st_mode
                if stat.S_ISREG(mode):
                    os.fchmod(fd, 0o555 if mode & 0o111 else 0o444)
            finally:
                os.close(fd)
        if root != os.fspath(top):  # the top stays writable until it is renamed into place
            os.fchmod(dir_fd, 0o555)


def _remove_tree(path: Path) -> None:
    """Remove ``path``: a folder with everything in it (read-only parts too), or a file or link;
    raise :class:`OSError` if something is left. Never follows a symbolic link
    (:func:`storage_app.fs_remove.remove_tree`)."""
    errors = remove_tree(path.parent, path.name)
    if errors:
        raise OSError(f"{len(errors)} error(s), first: {errors[0]}")


def _remove_leftovers(parent: Path, prefix: str) -> None:
    """Remove temporary folders of clones that were interrupted (a worker killed mid-clone).

    Only one spawn per user runs at a time (one active session per user), so a folder with the
    prefix in the user's home is never another clone's work in progress.
    """
    try:
        entries = [entry for entry in os.scandir(parent) if entry.name.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        try:
            _remove_tree(Path(entry.path))
        except OSError as exc:
            log.warning("notebooks library: cannot remove leftover %s: %s", entry.path, exc)
