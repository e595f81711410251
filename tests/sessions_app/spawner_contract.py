"""The behaviour every spawner back-end must have, as a mixin of tests.

A back-end's test module subclasses :class:`SpawnerContract` in a ``Test*`` class and implements
:meth:`SpawnerContract.make_spawner` (or overrides the ``spawner`` fixture when the back-end needs
other fixtures, such as a fake API server). Nothing here assumes processes, pods or ports: the
tests go through ``start``, ``poll``, ``poll_many``, ``stop``, ``list_servers``, ``find`` and
``wait_for_changes`` only.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from sessions_app.spawners.base import (
    PollResult,
    ServerStatus,
    Spawner,
    SpawnRequest,
    State,
)

Launch = Callable[..., tuple[SpawnRequest, State]]


def make_request(tmp_path: Path, username: str = "alice", **overrides: object) -> SpawnRequest:
    """A request for a small session of ``username`` with its home under ``tmp_path``."""
    fields: dict[str, object] = {
        "session_id": uuid.uuid4().hex,
        "username": username,
        "memory_mb": 2048,
        "cpus": 1,
        "duration_seconds": 3600,
        "home_dir": tmp_path / "home" / username,
    }
    fields.update(overrides)
    return SpawnRequest(**fields)  # type: ignore[arg-type]


def wait_for(
    spawner: Spawner, state: State, status: ServerStatus, timeout: float = 60.0
) -> PollResult:
    """Poll until the server reaches ``status``; fail early if it is gone while waiting for more."""
    deadline = time.monotonic() + timeout
    while True:
        result = spawner.poll(state)
        if result.status == status:
            return result
        if result.status == ServerStatus.GONE:
            pytest.fail(f"the server is gone while waiting for {status}: {result.message}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {status} within {timeout}s; last poll: {result}")
        time.sleep(0.2)


class SpawnerContract:
    """Tests any :class:`Spawner` back-end must pass."""

    #: How long a server may take from ``start`` to running.
    start_timeout = 60.0

    def make_spawner(self, tmp_path: Path) -> Spawner:
        """Each back-end's test class returns its spawner here."""
        raise NotImplementedError(f"{type(self).__name__} must define make_spawner")

    def make_request(self, tmp_path: Path, username: str) -> SpawnRequest:
        return make_request(tmp_path, username)

    def assert_url_answers(self, url: str) -> None:
        """The URL from a running poll opens the user's JupyterLab."""
        response = requests.get(url, timeout=10)
        assert response.status_code == 200, response.text[:500]

    @pytest.fixture
    def spawner(self, tmp_path: Path) -> Spawner:
        return self.make_spawner(tmp_path)

    @pytest.fixture
    def launch(self, spawner: Spawner, tmp_path: Path) -> Iterator[Launch]:
        """Start servers for the test and stop every one of them afterwards, even on failure."""
        started: list[State] = []

        def launch(username: str = "alice") -> tuple[SpawnRequest, State]:
            request = self.make_request(tmp_path, username)
            state = spawner.start(request, progress=lambda message: None)
            started.append(state)
            return request, state

        yield launch
        for state in started:
            spawner.stop(state)

    def test_started_server_becomes_running_and_its_url_answers(
        self, spawner: Spawner, launch: Launch
    ) -> None:
        _, state = launch()

        result = wait_for(spawner, state, ServerStatus.RUNNING, self.start_timeout)

        assert result.url
        self.assert_url_answers(result.url)

    def test_start_returns_a_json_serialisable_state(self, launch: Launch) -> None:
        _, state = launch()

        assert json.loads(json.dumps(state)) == state

    def test_stopped_server_is_gone(self, spawner: Spawner, launch: Launch) -> None:
        _, state = launch()
        wait_for(spawner, state, ServerStatus.RUNNING, self.start_timeout)

        spawner.stop(state)

        assert spawner.poll(state).status == ServerStatus.GONE

    def test_stop_twice_is_fine(self, spawner: Spawner, launch: Launch) -> None:
        _, state = launch()
        wait_for(spawner, state, ServerStatus.RUNNING, self.start_timeout)
        spawner.stop(state)

        spawner.stop(state)

        assert spawner.poll(state).status == ServerStatus.GONE

    def test_stop_while_starting_leaves_it_gone(self, spawner: Spawner, launch: Launch) -> None:
        _, state = launch()

        spawner.stop(state)

        assert spawner.poll(state).status == ServerStatus.GONE

    @pytest.mark.parametrize("state", [{}, {"unexpected": 1}, {"pid": "x", "port": None}])
    def test_garbage_state_is_gone_and_stops_quietly(self, spawner: Spawner, state: State) -> None:
        assert spawner.poll(state).status == ServerStatus.GONE
        spawner.stop(state)

    def test_poll_many_tells_each_server_as_poll_does(
        self, spawner: Spawner, launch: Launch
    ) -> None:
        _, running = launch("alice")
        _, stopped = launch("bob")
        wait_for(spawner, running, ServerStatus.RUNNING, self.start_timeout)
        spawner.stop(stopped)

        results = spawner.poll_many({"running": running, "stopped": stopped, "garbage": {}})

        assert {key: result.status for key, result in results.items()} == {
            "running": ServerStatus.RUNNING,
            "stopped": ServerStatus.GONE,
            "garbage": ServerStatus.GONE,
        }
        assert results["running"].url == spawner.poll(running).url

    def test_list_servers_sees_a_started_server_until_it_is_stopped(
        self, spawner: Spawner, launch: Launch
    ) -> None:
        request, state = launch()
        wait_for(spawner, state, ServerStatus.RUNNING, self.start_timeout)

        listed = {server.session_id for server in spawner.list_servers()}
        spawner.stop(state)
        listed_after_stop = {server.session_id for server in spawner.list_servers()}

        assert request.session_id in listed
        assert request.session_id not in listed_after_stop

    def test_listed_state_is_enough_to_stop_the_server(
        self, spawner: Spawner, launch: Launch
    ) -> None:
        request, state = launch()
        wait_for(spawner, state, ServerStatus.RUNNING, self.start_timeout)
        [listed] = [s for s in spawner.list_servers() if s.session_id == request.session_id]

        spawner.stop(listed.state)

        assert spawner.poll(state).status == ServerStatus.GONE

    def test_find_gives_a_started_servers_state_until_it_is_stopped(
        self, spawner: Spawner, launch: Launch
    ) -> None:
        request, state = launch()
        wait_for(spawner, state, ServerStatus.RUNNING, self.start_timeout)

        found = spawner.find(request.session_id)
        assert found is not None
        assert spawner.poll(found).status == ServerStatus.RUNNING
        spawner.stop(found)

        assert spawner.poll(state).status == ServerStatus.GONE
        assert spawner.find(request.session_id) is None
        assert spawner.find(uuid.uuid4().hex) is None

    def test_wait_for_changes_names_a_server_that_ended(
        self, spawner: Spawner, launch: Launch
    ) -> None:
        _, running = launch("alice")
        _, ended = launch("bob")
        wait_for(spawner, running, ServerStatus.RUNNING, self.start_timeout)
        wait_for(spawner, ended, ServerStatus.RUNNING, self.start_timeout)
        states = {"running": running, "ended": ended}

        spawner.stop(ended)

        changed: set[str] = set()
        deadline = time.monotonic() + 30
        while "ended" not in changed and time.monotonic() < deadline:
            changed |= spawner.wait_for_changes(states, 5.0)
        assert "ended" in changed
        assert changed <= set(states)
