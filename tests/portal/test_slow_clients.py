"""Slow clients hold no worker: twenty clients that send their headers a byte at a time, to the
router and to the web itself, while the probes still answer at once - the web running as in
production (portal/asgi.py under uvicorn), with as few threads as it may have."""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.portal.asgi_world import asgi_web
from tests.portal.router_world import nginx_router, router_base

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SLOW_CLIENTS = 20
PROBES = 20
# The kubelet's probe timeout in deploy/base/web.yaml: a probe slower than this failed.
PROBE_TIMEOUT = 5


@contextlib.contextmanager
def slow_header_clients(host: str, port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that began a request and send one more header byte every 0.5 s,
    never finishing it."""
    stop = threading.Event()
    sockets = [socket.create_connection((host, port), timeout=5) for _ in range(count)]
    for sock in sockets:
        sock.sendall(b"GET /api/v1/environments/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")

    def dribble() -> None:
        while not stop.wait(0.5):
            for sock in sockets:
                with contextlib.suppress(OSError):  # the server may give up on it: fine
                    sock.sendall(b"a")

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        yield sockets
    finally:
        stop.set()
        thread.join()
        for sock in sockets:
            sock.close()


def probe_times(base: str) -> list[float]:
    took = []
    for _ in range(PROBES):
        began = time.perf_counter()
        answer = requests.get(f"{base}/healthz", timeout=PROBE_TIMEOUT)
        took.append(time.perf_counter() - began)
        assert answer.status_code == 200
    return took


def test_slow_header_clients_do_not_delay_the_probes(tmp_path: Path) -> None:
    # Given the web with one process of two threads, and the router in front of it
    with (
        asgi_web(tmp_path, workers=1, WEB_THREADS="2") as (host, port),
        router_base() as folder,
        nginx_router(folder / "router", f"{host}:{port}") as router,
    ):
        router_port = int(router.rsplit(":", 1)[1])
        quiet = {"router": probe_times(router), "web": probe_times(f"http://{host}:{port}")}

        # When twenty clients dribble their headers, to the router and to the web directly
        with (
            slow_header_clients("127.0.0.1", router_port, SLOW_CLIENTS),
            slow_header_clients(host, port, SLOW_CLIENTS),
        ):
            time.sleep(1)  # they are all in, and have sent a few bytes more
            busy = {"router": probe_times(router), "web": probe_times(f"http://{host}:{port}")}

    # then every probe answered (within the kubelet's timeout, as probe_times asserts), and
    # about as fast as with nobody dribbling: no probe waited for a thread
    for path in ("router", "web"):
        assert statistics.median(busy[path]) < 10 * statistics.median(quiet[path]) + 0.05, (
            path,
            quiet[path],
            busy[path],
        )
