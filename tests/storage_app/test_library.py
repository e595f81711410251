"""The notebooks library: real git, real repositories made in the test, real failures."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from storage_app.library import library_clone

LIBRARY = Path(__file__).resolve().parents[2] / "storage_app" / "library.py"
GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Library Maintainer",
    "GIT_AUTHOR_EMAIL": "library@example.org",
    "GIT_COMMITTER_NAME": "Library Maintainer",
    "GIT_COMMITTER_EMAIL": "library@example.org",
}


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        env=GIT_ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A repository with a notebook, a script, a nested folder and a link out of the tree."""
    repo = tmp_path / "origin"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "README.md").write_text("# Notebooks\n")
    (repo / "examples").mkdir()
    (repo / "examples" / "averaging.ipynb").write_text('{"cells": []}\n')
    (repo / "tools").mkdir()
    (repo / "tools" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (repo / "tools" / "run.sh").chmod(0o755)
    (repo / "etc-link").symlink_to("/etc")
    commit_all(repo, "first")
    return repo


def url_of(repo: Path) -> str:
    # file:// rather than a plain path: git ignores --depth for plain local paths.
    return f"file://{repo}"


def modes(top: Path) -> dict[str, int]:
    """The permission bits of everything under ``top`` (links not followed), by relative path."""
    found = {".": stat.S_IMODE(os.lstat(top).st_mode)}
    for root, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            path = Path(root) / name
            found[str(path.relative_to(top))] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def leftovers(parent: Path) -> list[str]:
    return sorted(entry.name for entry in parent.iterdir() if entry.name.startswith("."))


def test_clone_is_a_read_only_shallow_snapshot_without_git_metadata(
    origin: Path, tmp_path: Path
) -> None:
    # Given a home and a repository
    home = tmp_path / "home"
    home.mkdir()
    head = git(origin, "rev-parse", "HEAD")
    etc_mode = os.stat("/etc").st_mode

    # When the library is cloned into it
    result = library_clone(home / "notebooks-library", url_of(origin), "", 60)

    # then it is the repository's content at its head, read-only, with links left as links
    library = home / "notebooks-library"
    assert result.status == "cloned"
    assert result.commit == head
    assert result.message.startswith(f"Notebooks library: cloned at commit {head[:12]}")
    assert (library / "examples" / "averaging.ipynb").read_text() == '{"cells": []}\n'
    assert not (library / ".git").exists()
    assert os.readlink(library / "etc-link") == "/etc"
    assert os.stat("/etc").st_mode == etc_mode
    got = modes(library)
    assert got.pop("etc-link") == 0o777  # a link's own bits; nothing was done to it or to /etc
    assert got == {
        ".": 0o555,
        "README.md": 0o444,
        "examples": 0o555,
        "examples/averaging.ipynb": 0o444,
        "tools": 0o555,
        "tools/run.sh": 0o555,  # executable stays executable, for everyone, read-only
    }
    assert leftovers(home) == []


def test_each_clone_replaces_the_previous_one_with_a_fresh_copy(
    origin: Path, tmp_path: Path
) -> None:
    # Given a library from an earlier spawn, which the user made writable and wrote into
    library = tmp_path / "home" / "notebooks-library"
    library.parent.mkdir()
    library_clone(library, url_of(origin), "", 60)
    library.chmod(0o755)
    (library / "tools").chmod(0o755)
    (library / "tools" / "my-notes.txt").write_text("mine")
    # and a repository that moved on: a file changed, one removed, one added
    (origin / "README.md").write_text("# Notebooks, second edition\n")
    (origin / "tools" / "run.sh").unlink()
    (origin / "new.ipynb").write_text("{}\n")
    head = commit_all(origin, "second")

    # When the next spawn clones it
    result = library_clone(library, url_of(origin), "", 60)

    # then the library is exactly the new head, read-only again, and nothing else is left
    assert (result.status, result.commit) == ("cloned", head)
    assert (library / "README.md").read_text() == "# Notebooks, second edition\n"
    assert (library / "new.ipynb").exists()
    assert not (library / "tools" / "run.sh").exists()
    assert not (library / "tools" / "my-notes.txt").exists()
    assert stat.S_IMODE(library.stat().st_mode) == 0o555
    assert leftovers(library.parent) == []


def test_a_configured_branch_is_cloned(origin: Path, tmp_path: Path) -> None:
    git(origin, "checkout", "--quiet", "-b", "courses")
    (origin / "course.ipynb").write_text("{}\n")
    head = commit_all(origin, "course")
    git(origin, "checkout", "--quiet", "main")
    library = tmp_path / "notebooks-library"

    result = library_clone(library, url_of(origin), "courses", 60)

    assert (result.status, result.commit) == ("cloned", head)
    assert "(branch courses)" in result.message
    assert (library / "course.ipynb").exists()


def test_no_url_means_not_configured_and_touches_nothing(tmp_path: Path) -> None:
    library = tmp_path / "notebooks-library"
    library.mkdir()
    (library / "old.txt").write_text("old")

    result = library_clone(library, "", "", 60)

    assert result.status == "not_configured"
    assert result.message == "No shared notebooks are offered here."
    assert (library / "old.txt").read_text() == "old"


def test_a_failed_clone_keeps_the_previous_library_and_says_so(
    origin: Path, tmp_path: Path
) -> None:
    # Given a library from an earlier spawn
    library = tmp_path / "home" / "notebooks-library"
    library.parent.mkdir()
    library_clone(library, url_of(origin), "", 60)
    before = modes(library)

    # When the next clone fails (the repository is gone)
    result = library_clone(library, url_of(tmp_path / "no-such-repository"), "", 60)

    # then the earlier copy is still there, unchanged, and the message says what happened
    assert result.status == "failed"
    assert result.message.startswith("Notebooks library: clone failed (")
    assert "does not appear to be a git repository" in result.message
    assert result.message.endswith("the copy from your previous session is kept.")
    assert modes(library) == before
    assert (library / "README.md").read_text() == "# Notebooks\n"
    assert leftovers(library.parent) == []


def test_a_failed_first_clone_leaves_no_library_and_no_half_clone(
    origin: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()

    result = library_clone(home / "notebooks-library", url_of(origin), "no-such-branch", 60)

    assert result.status == "failed"
    assert "no-such-branch" in result.message
    assert result.message.endswith("this session has no library.")
    assert list(home.iterdir()) == []


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers: a git server that hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in [*accepted, server]:
        connection.close()


def git_processes_for(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def test_a_clone_that_hangs_is_killed_at_the_timeout_with_its_helpers(
    silent_server: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a git server that accepts the connection and then never says anything
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    url = f"http://127.0.0.1:{silent_server}/notebooks.git"
    home = tmp_path / "home"
    home.mkdir()

    # When the clone runs with a two-second timeout
    started = time.monotonic()
    result = library_clone(home / "notebooks-library", url, "", 2)
    elapsed = time.monotonic() - started

    # then it gives up after about two seconds, and neither git nor its HTTP helper lives on
    assert result.status == "failed"
    assert "the clone took longer than 2 seconds" in result.message
    assert 2 <= elapsed < 10
    assert git_processes_for(url) == []
    assert list(home.iterdir()) == []


def test_credentials_in_the_url_never_reach_the_message(tmp_path: Path) -> None:
    # Port 1 on the loopback refuses at once: git reports the URL it could not reach.
    url = "http://reader:s3cret-token@127.0.0.1:1/notebooks.git"

    result = library_clone(tmp_path / "notebooks-library", url, "", 30)

    assert result.status == "failed"
    assert "s3cret-token" not in result.message
    assert "127.0.0.1" in result.message


def test_the_workers_git_configuration_does_not_apply(
    origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker whose own git configuration would send every file:// URL elsewhere
    worker_home = tmp_path / "worker-home"
    worker_home.mkdir()
    (worker_home / ".gitconfig").write_text(
        f'[url "file://{tmp_path}/nowhere/"]\n\tinsteadOf = file://\n'
    )
    monkeypatch.setenv("HOME", str(worker_home))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    redirected = subprocess.run(
        ["git", "ls-remote", url_of(origin)], capture_output=True, text=True, check=False
    )
    assert redirected.returncode != 0  # the configuration does bite a plain git call

    # When the library is cloned
    result = library_clone(tmp_path / "notebooks-library", url_of(origin), "", 60)

    # then it is cloned from the configured URL all the same
    assert result.status == "cloned"


def test_replacing_never_follows_links_the_user_put_in_the_library(
    origin: Path, tmp_path: Path
) -> None:
    # Given files outside the library, read-only, that must stay exactly as they are
    victim = tmp_path / "someone-else"
    (victim / "folder").mkdir(parents=True)
    (victim / "folder" / "data.txt").write_text("precious")
    (victim / "folder" / "data.txt").chmod(0o400)
    (victim / "folder").chmod(0o500)
    victim_before = modes(victim)
    # and a previous library in which the user planted links to them, a read-only folder and
    # a folder nobody may read
    library = tmp_path / "home" / "notebooks-library"
    library.parent.mkdir()
    library_clone(library, url_of(origin), "", 60)
    library.chmod(0o755)
    (library / "to-victim").symlink_to(victim / "folder")
    (library / "to-victim-file").symlink_to(victim / "folder" / "data.txt")
    (library / "sealed").mkdir()
    (library / "sealed" / "inner").mkdir()
    (library / "sealed" / "inner" / "to-victim").symlink_to(victim)
    (library / "sealed" / "inner").chmod(0o000)
    (library / "sealed").chmod(0o500)

    # When the next spawn replaces the library
    result = library_clone(library, url_of(origin), "", 60)

    # then the library is fresh and nothing outside it changed, in content or in mode
    assert result.status == "cloned"
    assert sorted(p.name for p in library.iterdir()) == [
        "README.md",
        "etc-link",
        "examples",
        "tools",
    ]
    assert modes(victim) == victim_before
    (victim / "folder").chmod(0o700)
    assert (victim / "folder" / "data.txt").read_text() == "precious"


def test_a_library_replaced_by_a_link_is_replaced_without_touching_the_target(
    origin: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "someone-else"
    victim.mkdir()
    (victim / "data.txt").write_text("precious")
    victim.chmod(0o500)
    library = tmp_path / "home" / "notebooks-library"
    library.parent.mkdir()
    library.symlink_to(victim)

    result = library_clone(library, url_of(origin), "", 60)

    assert result.status == "cloned"
    assert not library.is_symlink() and (library / "README.md").exists()
    assert stat.S_IMODE(victim.stat().st_mode) == 0o500
    assert [p.name for p in victim.iterdir()] == ["data.txt"]


def test_leftovers_of_an_interrupted_clone_are_removed(origin: Path, tmp_path: Path) -> None:
    # Given the temporary folder of a clone whose worker was killed, with read-only parts
    home = tmp_path / "home"
    stale = home / ".notebooks-library.k1ll3d" / "clone" / "examples"
    stale.mkdir(parents=True)
    (stale / "half.ipynb").write_text("{")
    (stale / "half.ipynb").chmod(0o444)
    stale.chmod(0o555)

    library_clone(home / "notebooks-library", url_of(origin), "", 60)

    assert sorted(p.name for p in home.iterdir()) == ["notebooks-library"]


# Run as another user: root ignores permission bits, so only a worker that is not root shows
# that read-only folders are made writable before they are removed.
_AS_WORKER = """
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("library", sys.argv[1])
library = importlib.util.module_from_spec(spec)
sys.modules["library"] = library
spec.loader.exec_module(library)
results = [library.library_clone(Path(sys.argv[2]), sys.argv[3], "", 60) for _ in range(2)]
print(json.dumps([[r.status, r.message] for r in results]))
"""


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="needs a system Python")
def test_a_worker_that_is_not_root_replaces_its_read_only_library(origin: Path) -> None:
    # Given a worker's user that is not root (nobody), owning the home and the repository
    if os.geteuid() != 0:
        pytest.skip("the test switches to another user: run it as root")
    workdir = Path(tempfile.mkdtemp(prefix="library-as-nobody-"))
    try:
        repo = workdir / "origin"
        subprocess.run(["cp", "-a", str(origin), str(repo)], check=True)
        (workdir / "home").mkdir()
        subprocess.run(["chown", "-R", "nobody:nogroup", str(workdir)], check=True)

        # When it clones the library twice, as two spawns do
        run = subprocess.run(
            ["/usr/bin/python3", "-c", _AS_WORKER, str(LIBRARY)]
            + [str(workdir / "home" / "notebooks-library"), url_of(repo)],
            user="nobody",
            group="nogroup",
            extra_groups=[],
            env={"PATH": os.environ.get("PATH", os.defpath)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        # then the second clone replaced the first (whose folders are read-only)
        assert run.returncode == 0, run.stderr
        assert [status for status, _ in json.loads(run.stdout)] == ["cloned", "cloned"], run.stdout
        assert sorted(p.name for p in (workdir / "home").iterdir()) == ["notebooks-library"]
    finally:
        shutil.rmtree(workdir)  # as root: read-only folders are no obstacle
