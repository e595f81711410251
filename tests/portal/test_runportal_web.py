"""runportal's web child: gunicorn with uvicorn's workers on portal/asgi.py, on the router's Unix
socket, as docs/benchmarks.md ("Web reads") chose; the command, without starting it."""

from __future__ import annotations

from typing import Any

import pytest

from portal.management.commands.runportal import Command
from portal.router import web_socket_path
from portal.supervisor import Child


def _web(*args: str) -> Child:
    command = Command()
    options: dict[str, Any] = vars(command.create_parser("manage.py", "runportal").parse_args(args))
    return command.children(options, "127.0.0.1:8000")["web"]


def _option(command: list[str], flag: str) -> str:
    assert command.count(flag) == 1, command
    return command[command.index(flag) + 1]


def test_the_web_runs_the_asgi_application_in_uvicorn_workers_on_the_router_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WEB_THREADS", raising=False)
    web = _web()
    command = list(web.command)

    assert command[command.index("gunicorn") + 1] == "portal.asgi:application"
    assert _option(command, "--worker-class") == "uvicorn_worker.UvicornWorker"
    assert _option(command, "--bind") == f"unix:{web_socket_path()}"
    assert _option(command, "--umask") == "0o000"  # the router's folder keeps others out
    assert _option(command, "--access-logfile") == "-"
    assert "--no-control-socket" in command
    assert web.env is not None
    assert web.env["WEB_THREADS"] == "8"


def test_the_web_threads_and_its_pool_follow_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_POOL_SIZE", raising=False)
    web = _web("--web-threads", "3")
    assert web.env is not None
    assert web.env["WEB_THREADS"] == "3"
    assert web.env["DATABASE_POOL_SIZE"] == "7"  # a connection per thread, and a few more
