"""A private Redis for one test stack: the Celery broker that a chaos test stops and restarts.

The machine's Redis (port 6379) is shared by every test; this one runs on a port of its own,
with an append-only file in its folder as the embedded broker has (runportal's
``embedded_broker``): tasks queued before a stop (deadlines scheduled ahead) are there again
after the restart, so a test sees what an outage of the real broker does.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.pg_cluster import free_port

START_TIMEOUT = 30.0


def redis_server_path() -> str:
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/bin")
    if not found:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    return found


def answers_ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")
    return False


@dataclass
class RedisServer:
    """redis-server on 127.0.0.1:``port``, its data and log in ``folder``."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again, on the same port and files) and wait until it answers PING."""
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_path(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.folder), "--save", "", "--appendonly", "yes",
            "--appendfsync", "everysec", "--daemonize", "no", "--loglevel", "warning",
            "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.folder
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not answers_ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start on {self.port}:\n{log}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it: SIGTERM is Redis's own shutdown (the append-only file is written), SIGKILL
        a crash. Nothing if it is not running."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
