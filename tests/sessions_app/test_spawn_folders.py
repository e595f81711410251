"""A real spawn through the worker: the session's three folders, and pip installs that persist.

The library comes from a git repository made here; the package installed is a wheel built here,
so nothing needs the network.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import stat
import subprocess
import sysconfig
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from sessions_app.models import Environment, Session
from sessions_app.services import session_launch, session_request_stop
from sessions_app.spawners.base import SpawnRequest, State
from sessions_app.spawners.isolation import IsolationConfig
from sessions_app.spawners.local import LocalProcessSpawner
from sessions_app.spawners.user_python import user_python_ensure
from storage_app.layout import home_path, scratch_path
from tests.conftest import login_verified
from tests.sessions_app.jupyter_kernel import execute, start_kernel
from tests.sessions_app.lifecycle import in_state, wait_for
from tests.sessions_app.local_world import session_python
from tests.sessions_app.unix_forward import forward

GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
}
PACKAGE = "portal_probe_pkg"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], env=GIT_ENV, capture_output=True, text=True, check=True
    ).stdout.strip()


def commit_file(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    git(repo, "add", "--all")
    git(repo, "commit", "-q", "-m", f"add {name}")
    return git(repo, "rev-parse", "HEAD")


def make_wheel(directory: Path, version: str) -> Path:
    """A pure-Python wheel of one module that knows its version (what pip installs from PyPI)."""
    directory.mkdir(parents=True, exist_ok=True)
    dist_info = f"{PACKAGE}-{version}.dist-info"
    files = {
        f"{PACKAGE}.py": f"VERSION = {version!r}\n".encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {version}\n".encode()
        ),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = directory / f"{PACKAGE}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def launch_running(user: User) -> Session:
    session = session_launch(user=user, environment_slug="ecmwf-dss", options={}).session
    return wait_for(session.pk, in_state(Session.State.RUNNING), timeout=120)


def run_in_new_kernel(session: Session, code: str) -> Any:
    """Run ``code`` in a new kernel of the session's server; it prints one JSON value."""
    state = session.spawner_state
    # The server listens on its Unix socket only; the router's own tests go through nginx.
    with forward(state["socket"]) as base:
        url = f"{base}{state['base_url']}"
        kernel_id = start_kernel(url, state["token"])
        result = execute(url, state["token"], kernel_id, code, timeout=180)
    assert result.status == "ok", (result.ename, result.stdout)
    return json.loads(result.stdout.strip().splitlines()[-1])


PIP_INSTALL = """
import json, subprocess, sys
# As `!pip install …` or a terminal does it: the pip found on the session's PATH.
done = subprocess.run(["pip", "install", "--no-index", {wheel!r}], capture_output=True, text=True)
open("scratch/hello.txt", "w").write("written from the session")
import os
print(json.dumps([
    done.returncode, done.stdout[-500:] + done.stderr[-1000:], sys.executable, os.getcwd(),
    os.getuid(),
]))
"""

NEXT_SESSION = """
import json, subprocess, sys
import {package}
found = [{package}.VERSION, {package}.__file__]
# An upgrade through the kernel's own Python (what %pip does), then a fresh process.
done = subprocess.run(
    [sys.executable, "-m", "pip", "install", "--no-index", {wheel!r}],
    capture_output=True, text=True,
)
after = subprocess.run(
    ["python", "-c", "import {package}; print({package}.VERSION)"], capture_output=True, text=True
)
listed = subprocess.run(["pip", "list", "--format=json"], capture_output=True, text=True)
versions = [
    p["version"] for p in json.loads(listed.stdout) if p["name"].replace("-", "_") == "{package}"
]
print(json.dumps([found, done.returncode, done.stderr[-1000:], after.stdout.strip(), versions]))
"""


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_session_gets_its_three_folders_and_pip_installs_persist(
    celery_worker: Any,
    accepted: User,
    environment: Environment,
    settings: Any,
    tmp_path: Path,
) -> None:
    # Given a notebooks library repository and a package to install
    origin = tmp_path / "library-origin"
    origin.mkdir()
    git(origin, "init", "-q")
    first = commit_file(origin, "welcome.ipynb", '{"cells": []}\n')
    settings.NOTEBOOKS_LIBRARY_URL = f"file://{origin}"
    # The session sees only its own folders: the wheels are put in its scratch, as a user's
    # download would be.
    wheels = scratch_path(accepted) / "wheels"
    wheel_1, wheel_2 = make_wheel(wheels, "1.0"), make_wheel(wheels, "2.0")

    # When the user launches a session
    session = launch_running(accepted)

    # then the home is private, owned by the user's own OS account
    home, scratch = home_path(accepted), scratch_path(accepted)
    uid = session.spawner_state["uid"]
    assert uid != os.getuid()
    info = home.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o700, uid)
    # scratch is private too, and reachable from the home
    assert (stat.S_IMODE(scratch.stat().st_mode), scratch.stat().st_uid) == (0o700, uid)
    assert os.readlink(home / "scratch") == str(scratch)
    # the library is a read-only clone of the repository's head, and the user is told so
    library = home / "notebooks-library"
    assert (library / "welcome.ipynb").read_text() == '{"cells": []}\n'
    assert stat.S_IMODE(library.stat().st_mode) == 0o555
    assert stat.S_IMODE((library / "welcome.ipynb").stat().st_mode) == 0o444
    assert not (library / ".git").exists()
    assert session.library_status.startswith(f"Notebooks library: cloned at commit {first[:12]}")
    client = Client()
    login_verified(client, accepted)
    assert session.library_status in client.get("/session/").content.decode()
    api = APIClient()
    login_verified(api, accepted)
    assert api.get("/api/v1/session/").json()["library_status"] == session.library_status

    # When the user installs a package with pip in a kernel, and writes to scratch
    code, output, kernel_python, cwd, kernel_uid = run_in_new_kernel(
        session, PIP_INSTALL.format(wheel=str(wheel_1))
    )

    # then the kernel runs as the user's account, in the home
    assert (cwd, kernel_uid) == (str(home), uid)
    # the package is in the home, not in the portal's environment; the file in scratch
    assert code == 0, output
    site_packages = home / ".local" / "lib" / f"python{sysconfig.get_python_version()}"
    assert (site_packages / "site-packages" / f"{PACKAGE}.py").is_file()
    assert not (Path(sysconfig.get_paths()["purelib"]) / f"{PACKAGE}.py").exists()
    assert Path(kernel_python).parent == home / ".local" / "bin"  # the user's environment
    assert (scratch / "hello.txt").read_text() == "written from the session"

    # When the session ends, the library's repository moves on, and the user launches again
    assert session_request_stop(str(session.pk), Session.Reason.USER_STOPPED)
    wait_for(session.pk, in_state(Session.State.STOPPED))
    second = commit_file(origin, "lesson-2.ipynb", "{}\n")
    session = launch_running(accepted)

    # then the library is a fresh clone of the new head
    assert (library / "lesson-2.ipynb").is_file()
    assert session.library_status.startswith(f"Notebooks library: cloned at commit {second[:12]}")
    # and the package installed in the last session is there, and upgrades in place
    found, code, errors, after, versions = run_in_new_kernel(
        session,
        NEXT_SESSION.format(package=PACKAGE, wheel=str(wheel_2)),
    )
    assert found == ["1.0", str(site_packages / "site-packages" / f"{PACKAGE}.py")]
    assert code == 0, errors
    assert (after, versions) == ("2.0", ["2.0"])
    assert [p.name for p in (site_packages / "site-packages").glob(f"{PACKAGE}-*")] == [
        f"{PACKAGE}-2.0.dist-info"
    ]


# A stand-in server: the process is what these tests look at, not Jupyter.
SLEEPER = [session_python(), "-c", "import time; time.sleep(600)"]


def sleeper_request(tmp_path: Path, scratch: Path | None) -> SpawnRequest:
    return SpawnRequest(
        session_id=uuid.uuid4().hex,
        username="alice",
        # An account number of its own, far from the test database's.
        user_id=99_001,
        memory_mb=2048,
        cpus=1,
        duration_seconds=600,
        home_dir=tmp_path / "home" / "alice",
        scratch_dir=scratch,
        backend_settings={"command": SLEEPER},
    )


# Both modes: multi-user (root, the default here) sandboxes the server as the user's account;
# single-user (LOCAL_ISOLATION=off) runs it as the portal's user.
MODES = pytest.mark.parametrize("mode", ["auto", "off"])


def sleeper_spawner(tmp_path: Path, mode: str) -> LocalProcessSpawner:
    return LocalProcessSpawner(tmp_path / "run", isolation=IsolationConfig(mode=mode))


def sleeper_started(spawner: LocalProcessSpawner, request: SpawnRequest) -> tuple[State, Any]:
    """Start the stand-in server; return its state and its process once it runs (the session's
    first program prepares the home before it starts the server)."""
    state = spawner.start(request, progress=lambda message: None)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for proc in [psutil.Process(state["pid"]), *psutil.Process(state["pid"]).children(True)]:
            with contextlib.suppress(psutil.Error):
                if proc.cmdline()[: len(SLEEPER)] == SLEEPER:
                    return state, proc
        time.sleep(0.05)
    log = Path(state["log_path"]).read_text(errors="replace")
    spawner.stop(state)
    raise AssertionError(f"the stand-in server did not start; its log:\n{log}")


@MODES
def test_the_server_gets_the_install_locations_in_the_home(tmp_path: Path, mode: str) -> None:
    spawner = sleeper_spawner(tmp_path, mode)
    request = sleeper_request(tmp_path, tmp_path / "scratch" / "alice")
    state, server = sleeper_started(spawner, request)
    try:
        env = server.environ()
    finally:
        spawner.stop(state)

    home = request.home_dir
    assert env["PATH"].split(os.pathsep)[0] == str(home / ".local" / "bin")
    assert env["VIRTUAL_ENV"] == env["PYTHONUSERBASE"] == str(home / ".local")
    assert env["JUPYTER_PREFER_ENV_PATH"] == "0"
    assert env["CONDA_ENVS_PATH"] == str(home / ".conda" / "envs")
    assert env["CONDA_PKGS_DIRS"] == str(home / ".conda" / "pkgs")
    assert env["PIP_CACHE_DIR"] == str(tmp_path / "scratch" / "alice" / ".cache" / "pip")
    assert os.readlink(home / "scratch") == str(tmp_path / "scratch" / "alice")
    kernel = json.loads(
        (home / ".local" / "share" / "jupyter" / "kernels" / "python3" / "kernel.json").read_text()
    )
    assert Path(kernel["argv"][0]).parent == home / ".local" / "bin"


@MODES
def test_a_folder_of_the_users_own_named_scratch_is_left_alone(tmp_path: Path, mode: str) -> None:
    # Given a home where the user made a folder called "scratch" themselves
    request = sleeper_request(tmp_path, tmp_path / "scratch" / "alice")
    (request.home_dir / "scratch").mkdir(parents=True)
    (request.home_dir / "scratch" / "notes.txt").write_text("mine")
    spawner = sleeper_spawner(tmp_path, mode)

    # When a session starts
    state, _ = sleeper_started(spawner, request)
    spawner.stop(state)

    # then the folder is still the user's, with what they put in it
    assert not (request.home_dir / "scratch").is_symlink()
    assert (request.home_dir / "scratch" / "notes.txt").read_text() == "mine"


@MODES
def test_a_stale_scratch_link_is_pointed_at_the_users_scratch(tmp_path: Path, mode: str) -> None:
    request = sleeper_request(tmp_path, tmp_path / "scratch" / "alice")
    request.home_dir.mkdir(parents=True)
    (request.home_dir / "scratch").symlink_to(tmp_path / "old-scratch-root" / "alice")
    spawner = sleeper_spawner(tmp_path, mode)

    state, _ = sleeper_started(spawner, request)
    spawner.stop(state)

    assert os.readlink(request.home_dir / "scratch") == str(tmp_path / "scratch" / "alice")
    assert sorted(p.name for p in request.home_dir.iterdir() if "scratch" in p.name) == ["scratch"]


def test_refreshing_the_environment_keeps_installs_and_mends_the_interpreter_link(
    tmp_path: Path,
) -> None:
    # Given a user's environment with a package in it, whose interpreter link broke (the
    # portal's Python moved)
    prefix = tmp_path / "home" / ".local"
    bin_dir = user_python_ensure(prefix)
    site_packages = prefix / "lib" / f"python{sysconfig.get_python_version()}" / "site-packages"
    (site_packages / "mine.py").write_text("VALUE = 42\n")
    # The one link to the interpreter itself; python and python3 link to it by name.
    [interpreter] = [
        p for p in bin_dir.iterdir() if p.is_symlink() and os.path.isabs(os.readlink(p))
    ]
    target = os.readlink(interpreter)
    interpreter.unlink()
    interpreter.symlink_to(tmp_path / "gone" / "python")

    # When the next session refreshes it
    user_python_ensure(prefix)

    # then the interpreter is linked again, and the package is still importable with it
    assert os.readlink(interpreter) == target
    result = subprocess.run(
        [str(bin_dir / "python"), "-c", "import mine, jupyter_server; print(mine.VALUE)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "42"
