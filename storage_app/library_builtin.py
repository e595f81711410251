"""The notebooks library that ships with the portal: ``NOTEBOOKS_LIBRARY_URL=builtin``.

The content is ``images/notebooks-library`` in the portal's source tree. Sessions get it the way
they get any library, as a fresh clone (:mod:`storage_app.library`): the portal keeps a bare git
repository of it under its var folder (``PORTAL_VAR_DIR/notebooks-library.git``), brought up to
date at each spawn, and the spawn clones that.

The repository has one branch, ``main``, whose commit has no parent and a fixed author,
committer and date: the commit is a function of the content alone, so the same content gives
the same commit (on every worker, after every restart), and a commit is made only when the
content changed. Hidden files and folders (``.ipynb_checkpoints``, editor files) and
``__pycache__`` are left out.

Only back-ends whose worker clones the library can use it (the local one). The Kubernetes
back-end's pods clone it themselves and cannot reach the portal's disk: there ``builtin`` means
no library (see ``sessions_app/spawners/__init__.py`` and ``storage_app/layout.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from storage_app.library import git_environment

BUILTIN = "builtin"
REPOSITORY_NAME = "notebooks-library.git"
BRANCH = "main"
_GIT_TIMEOUT_SECONDS = 60
# The same for every commit: the commit is a function of the content.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Jupyter portal",
    "GIT_AUTHOR_EMAIL": "notebooks-library@portal.invalid",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "Jupyter portal",
    "GIT_COMMITTER_EMAIL": "notebooks-library@portal.invalid",
    "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+0000",
}
_MESSAGE = "The notebooks library that ships with the portal (images/notebooks-library)\n"
# Left out of the library (git's exclude syntax): hidden files and folders, Python's caches.
_EXCLUDE = ".*\n__pycache__/\n*.pyc\n"


class BuiltinLibraryError(RuntimeError):
    """The built-in library's repository could not be made or brought up to date."""


def is_builtin(url: str) -> bool:
    """Whether ``url`` (a ``NOTEBOOKS_LIBRARY_URL``) names the library shipped with the portal."""
    return url.strip().lower() == BUILTIN


def default_source() -> Path:
    """The built-in library's content in the portal's source tree."""
    return Path(settings.BASE_DIR) / "images" / "notebooks-library"


def default_repository() -> Path:
    """Where the portal keeps the built-in library's repository."""
    return Path(settings.VAR_DIR) / REPOSITORY_NAME


def builtin_library_url(source: Path | None = None, repository: Path | None = None) -> str:
    """Make or bring up to date the bare repository of ``source``; return the URL to clone.

    Defaults: :func:`default_source` and :func:`default_repository`. Safe to call from several
    workers at once (they take turns on a lock file beside the repository). Raises
    :class:`BuiltinLibraryError` (or ``OSError``) if the repository cannot be made.
    """
    source = Path(source or default_source())
    repository = Path(repository or default_repository())
    if not source.is_dir():
        raise BuiltinLibraryError(f"the library's content is missing ({source} is not a folder)")
    repository.parent.mkdir(parents=True, exist_ok=True)
    with _locked(repository.with_name(repository.name + ".lock")):
        _refresh(source, repository)
    return repository.as_uri()


def builtin_library_commit(repository: Path | None = None) -> str:
    """The commit the built-in library's repository serves (empty if there is none yet)."""
    repository = Path(repository or default_repository())
    if not (repository / "HEAD").is_file():
        return ""
    with tempfile.TemporaryDirectory(prefix="portal-git-home-") as home:
        return _head(repository, git_environment(home))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file is closed
        yield
    finally:
        os.close(fd)


def _refresh(source: Path, repository: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="portal-git-home-") as home:
        env = git_environment(home)
        if not (repository / "HEAD").is_file():
            # Missing, or left half made by a worker that was killed: start again.
            if repository.is_dir() and not repository.is_symlink():
                shutil.rmtree(repository)
            elif repository.exists() or repository.is_symlink():
                repository.unlink()
            _git(env, "init", "--quiet", "--bare", f"--initial-branch={BRANCH}", str(repository))
        (repository / "info").mkdir(exist_ok=True)
        (repository / "info" / "exclude").write_text(_EXCLUDE)
        # The content's tree, staged through an index of our own (a bare repository has none).
        env["GIT_INDEX_FILE"] = str(Path(home) / "index")
        work = ["--git-dir", str(repository), "--work-tree", str(source)]
        _git(env, *work, "add", "--all")
        tree = _git(env, *work, "write-tree")
        head = _head(repository, env)
        if (
            head
            and _git(env, "--git-dir", str(repository), "rev-parse", f"{head}^{{tree}}") == tree
        ):
            return  # the content has not changed
        commit = _git(
            {**env, **_IDENTITY}, "--git-dir", str(repository), "commit-tree", tree, "-m", _MESSAGE
        )
        _git(env, "--git-dir", str(repository), "update-ref", f"refs/heads/{BRANCH}", commit)
        _git(env, "--git-dir", str(repository), "symbolic-ref", "HEAD", f"refs/heads/{BRANCH}")


def _head(repository: Path, env: dict[str, str]) -> str:
    """The repository's commit, or "" while it has none."""
    try:
        return _git(env, "--git-dir", str(repository), "rev-parse", "--verify", "--quiet", "HEAD")
    except BuiltinLibraryError:
        return ""


def _git(env: dict[str, str], *args: str) -> str:
    git = shutil.which("git", path=env.get("PATH"))
    if git is None:
        raise BuiltinLibraryError("git is not installed on the portal's worker")
    try:
        result = subprocess.run(
            [git, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BuiltinLibraryError(
            f"git {args[-1]} took longer than {_GIT_TIMEOUT_SECONDS} seconds"
        ) from None
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        raise BuiltinLibraryError(f"git failed: {reason[0]}")
    return result.stdout.strip()
