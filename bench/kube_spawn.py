"""Kubernetes spawn benchmark: how soon a start sees its pod ready, and what it costs the API.

The spawn task alternates ``poll`` (read the pod, and its events while it is not ready) with a
wait. The Kubernetes back-end waits on a **watch** of the pod (``KubernetesSpawner.wait``); the
alternative is to sleep between polls. This measures, in one run and interleaved (so that a noisy
machine hits every strategy alike), for each way of waiting:

- the **lag**: from the moment the kubelet reports the pod ready to the moment the start sees it;
- the **API requests** the spawner made per start (counted in its client: reads, event lists,
  watches; the creates and deletes are the same for all).

No cluster runs here: the API server is the tests' fake (``tests/kube/apiserver.py``, the real
``kubernetes`` client over HTTP on 127.0.0.1) and the test kubelet makes each pod ready after
a random 0.5–2.5 s, as a pull of a cached image would. Absolute figures are this machine's and
the fake's; the ratios between strategies are the point.

Usage: ``.venv/bin/python bench/kube_spawn.py [--starts 30]``. Writes the "Kubernetes spawn"
section of ``docs/benchmarks.md`` and raw JSON under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

# isort: split
# The scripts' shared helpers, bench/common.py (bench/ is on sys.path: the script's folder).
from common import ROOT, add_output_arguments, command_line, machine_basics, publish

sys.path.insert(0, str(ROOT))

# isort: split
from sessions_app.spawners.base import ServerStatus, SpawnRequest  # noqa: E402
from sessions_app.spawners.kube import KubernetesSpawner  # noqa: E402
from sessions_app.spawners.kube_objects import KubeConfig  # noqa: E402
from tests.kube.apiserver import FakeApiServer  # noqa: E402
from tests.kube.kubelet import Kubelet  # noqa: E402

NS = "jupyter-sessions"
SPAWN_POLL_SECONDS = 0.05  # the setting's default, what the spawn loop passes to wait()
STRATEGIES = {
    "watch (wait() on the pod)": None,
    "sleep 0.05 s between polls": 0.05,
    "sleep 1 s between polls": 1.0,
}


class CountingSpawner(KubernetesSpawner):
    """Counts the API requests the spawner itself makes (every call goes through call_api)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        api = self.api_client
        original: Callable[..., Any] = api.call_api

        def counted(*a: Any, **k: Any) -> Any:
            self.calls += 1
            return original(*a, **k)

        api.call_api = counted  # type: ignore[method-assign]


def one_start(
    spawner: CountingSpawner, kubelet: Kubelet, sleep: float | None, delay: float
) -> tuple[float, int]:
    """Start a session, make it ready after ``delay``; the lag to seeing it, and the requests
    made while waiting (the start's own creates excluded)."""
    request = SpawnRequest(
        session_id=str(uuid.uuid4()),
        username="bench",
        memory_mb=1024,
        cpus=1,
        duration_seconds=3600,
        home_dir=Path("/nonexistent/home/u~1"),
        scratch_dir=Path("/nonexistent/scratch/u~1"),
        backend_settings={"image": "example.org/session:1"},
    )
    state = spawner.start(request, lambda message: None)
    ready_at: list[float] = []

    def become_ready() -> None:
        kubelet.schedule(state["pod"])
        kubelet.pulling(state["pod"])
        kubelet.run(state["pod"])
        ready_at.append(time.monotonic())

    timer = threading.Timer(delay, become_ready)
    before = spawner.calls
    timer.start()
    while spawner.poll(state).status != ServerStatus.RUNNING:
        if sleep is None:
            spawner.wait(state, SPAWN_POLL_SECONDS)
        else:
            time.sleep(sleep)
    seen = time.monotonic()
    calls = spawner.calls - before
    timer.join()
    spawner.stop(state)
    return seen - ready_at[0], calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=30, help="starts per strategy")
    parser.add_argument("--seed", type=int, default=5)
    add_output_arguments(parser)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    now = datetime.now(UTC)

    server = FakeApiServer().start()
    try:
        kubelet = Kubelet(server.api_client(), NS)
        spawner = CountingSpawner(KubeConfig(namespace=NS), server.api_client(), retries=0)
        lags: dict[str, list[float]] = {name: [] for name in STRATEGIES}
        calls: dict[str, list[int]] = {name: [] for name in STRATEGIES}
        for index in range(args.starts):
            delay = rng.uniform(0.5, 2.5)
            order = list(STRATEGIES.items())
            rng.shuffle(order)
            for name, sleep in order:
                lag, made = one_start(spawner, kubelet, sleep, delay)
                lags[name].append(lag)
                calls[name].append(made)
            print(f"{index + 1}/{args.starts}", end="\r", flush=True)
    finally:
        server.stop()

    def p90(values: list[float]) -> float:
        return statistics.quantiles(values, n=10)[-1]

    watch = next(iter(STRATEGIES))
    rows = []
    for name in STRATEGIES:
        median_lag = statistics.median(lags[name])
        rows.append(
            f"| {name} | {median_lag * 1000:.0f} ms | {p90(lags[name]) * 1000:.0f} ms "
            f"| {statistics.mean(calls[name]):.1f} | "
            f"×{statistics.mean(calls[name]) / statistics.mean(calls[watch]):.1f} |"
        )
    basics = machine_basics()
    section = "\n".join(
        [
            "## Kubernetes spawn",
            "",
            "How soon a start sees its pod ready, and the API requests it makes while waiting, "
            f"for {args.starts} starts per way of waiting (interleaved, the same ready delays, "
            "0.5–2.5 s). The Kubernetes back-end waits on a watch of the pod "
            "(`KubernetesSpawner.wait`). Against the tests' fake API server over HTTP on "
            "127.0.0.1 (no cluster runs here): compare the rows, not the absolute figures.",
            "",
            "| waiting | lag, median | lag, p90 | requests per start | vs watch |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
            f"Machine: {basics['nproc']} CPUs ({basics['cpu']}), {basics['ram_gib']} GiB, "
            f"Linux {basics['kernel']}, Python {basics['python']}, "
            f"kubernetes {version('kubernetes')}, kmock {version('kmock')}.",
            "",
            "```sh",
            command_line(),
            "```",
        ]
    )
    results = {
        "when": now.isoformat(),
        "machine": basics,
        "starts": args.starts,
        "lags": lags,
        "calls": calls,
    }
    publish(args, "Kubernetes spawn", section, "kube-spawn", now, results)


if __name__ == "__main__":
    main()
