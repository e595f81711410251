"""Real local sessions for the isolation and limits tests: OS accounts, sandboxes, cgroups.

Runs as root only (multi-user mode); elsewhere the tests that use it are skipped with the
reason. Portal account keys come from a range of their own (99100 and up) so that the OS
accounts never meet those of other tests' users.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sessions_app.spawners.base import ServerStatus, SpawnerError, SpawnRequest, State
from sessions_app.spawners.isolation import IsolationConfig, multi_user_problem
from sessions_app.spawners.local import LocalProcessSpawner
from sessions_app.spawners.software import session_software
from tests.sessions_app.jupyter_kernel import Execution, execute, start_kernel
from tests.sessions_app.spawner_contract import wait_for
from tests.sessions_app.unix_forward import forward

ISOLATION_PROBLEM = multi_user_problem()
# A developer's machine without root may skip these; CI (CI=true, as root, with the Makefile's
# bubblewrap and iptables) never does: there a missing tool fails the tests instead.
needs_isolation = pytest.mark.skipif(
    bool(ISOLATION_PROBLEM) and not os.environ.get("CI"),
    reason=f"no multi-user isolation here: {ISOLATION_PROBLEM}",
)
FIRST_TEST_PK = 99_100


def session_python() -> str:
    """The session software's Python: what a sandboxed session can run (the portal's own
    virtual environment is not in the sandbox). The portal's, where the software is missing
    (the tests that need it fail then, saying so)."""
    from django.conf import settings

    try:
        return str(session_software(settings.LOCAL_SESSION_ENV).python)
    except SpawnerError:
        return sys.executable


@pytest.fixture
def socket_root() -> Iterator[Path]:
    """A short folder for the sockets (a Unix socket's path has at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="jlp-t-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class LiveSession:
    """A running session and a way into it: REST and kernels over its Unix socket."""

    spawner: LocalProcessSpawner
    request: SpawnRequest
    state: State
    base: str = ""  # http://127.0.0.1:<forwarder port>
    kernel_id: str = ""
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def server_url(self) -> str:
        return f"{self.base}{self.state['base_url']}"

    @property
    def token(self) -> str:
        return str(self.state["token"])

    def run(self, code: str, timeout: float = 120.0) -> Execution:
        """Run ``code`` in the session's kernel (started at the first call)."""
        if not self.kernel_id:
            self.kernel_id = start_kernel(self.server_url, self.token)
        return execute(self.server_url, self.token, self.kernel_id, code, timeout=timeout)

    def value(self, expression: str) -> str:
        """``print(expression)`` in the kernel; its output, stripped. Fails on an error."""
        result = self.run(f"print({expression})")
        assert result.status == "ok", result
        return result.stdout.strip()


@dataclass
class World:
    tmp_path: Path
    spawner: LocalProcessSpawner
    sessions: list[LiveSession] = field(default_factory=list)

    def request(self, pk: int, **overrides: object) -> SpawnRequest:
        folder = f"u~{pk}"
        fields: dict[str, object] = {
            "session_id": uuid.uuid4().hex,
            "username": f"user{pk}",
            "user_id": pk,
            "memory_mb": 1024,
            "cpus": 1,
            "duration_seconds": 3600,
            "home_dir": self.tmp_path / "home" / folder,
            "scratch_dir": self.tmp_path / "scratch" / folder,
        }
        fields.update(overrides)
        return SpawnRequest(**fields)  # type: ignore[arg-type]

    def start(self, pk: int, wait: bool = True, **overrides: object) -> LiveSession:
        request = self.request(pk, **overrides)
        state = self.spawner.start(request, progress=lambda message: None)
        session = LiveSession(self.spawner, request, state)
        self.sessions.append(session)
        if wait:
            wait_for(self.spawner, state, ServerStatus.RUNNING, timeout=90)
            session.base = session._stack.enter_context(forward(state["socket"]))
        return session

    def close(self) -> None:
        for session in self.sessions:
            session._stack.close()
            self.spawner.stop(session.state)


@pytest.fixture
def isolation_config() -> IsolationConfig:
    return IsolationConfig(mode="required", router_group="www-data")


@pytest.fixture
def world(tmp_path: Path, socket_root: Path, isolation_config: IsolationConfig) -> Iterator[World]:
    spawner = LocalProcessSpawner(
        tmp_path / "run", socket_dir=socket_root, isolation=isolation_config, stop_grace_seconds=2
    )
    world = World(tmp_path, spawner)
    try:
        yield world
    finally:
        world.close()
