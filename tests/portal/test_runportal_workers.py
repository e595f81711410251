"""runportal runs a Celery worker per queue (portal/settings.py, "Celery"), each with its own
threads, so that a stop never waits behind starts; the commands, without starting them."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from portal.management.commands.runportal import Command
from portal.supervisor import Child


def _children(*args: str) -> dict[str, Child]:
    command = Command()
    options: dict[str, Any] = vars(command.create_parser("manage.py", "runportal").parse_args(args))
    return command.children(options, "127.0.0.1:8000")


def _option(command: list[str], flag: str) -> str:
    assert command.count(flag) == 1, command
    return command[command.index(flag) + 1]


def test_one_worker_per_queue_each_consuming_its_own() -> None:
    children = _children()
    workers = {name: list(child.command) for name, child in children.items() if "worker" in name}

    queues = [queue.name for queue in settings.CELERY_TASK_QUEUES]
    assert list(workers) == [f"worker-{queue}" for queue in queues]
    for queue in queues:
        command = workers[f"worker-{queue}"]
        assert command[command.index("-A") :][:3] == ["-A", "portal", "worker"]
        assert _option(command, "-Q") == queue
        assert _option(command, "-n") == f"{queue}@%h"  # a node name of its own
        assert _option(command, "--pool") == "threads"
        assert _option(command, "--concurrency") == str(settings.WORKER_QUEUE_CONCURRENCY[queue])
    # Beat still runs, once, after the workers.
    assert list(children)[-1] == "beat"


def test_each_worker_takes_its_own_concurrency() -> None:
    children = _children("--control-concurrency", "3", "--spawn-concurrency", "40")

    assert _option(list(children["worker-control"].command), "--concurrency") == "3"
    assert _option(list(children["worker-spawn"].command), "--concurrency") == "40"
    assert _option(list(children["worker-storage"].command), "--concurrency") == str(
        settings.WORKER_QUEUE_CONCURRENCY["storage"]
    )
