"""A database outage a test can switch on and off: a TCP forwarder in front of PostgreSQL.

The portal under test (the test client in this process, or a web server in its own) connects to
the forwarder instead of PostgreSQL. :meth:`TcpForwarder.cut` resets every connection it
carries and every new one (as a database that went away does: a reset, then refusals), without
touching the machine's PostgreSQL or anyone else's connections; :meth:`TcpForwarder.restore`
lets connections through again. The listening socket stays bound throughout, so the address the
portal was given stays the forwarder's.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

from django.db import connection


class TcpForwarder:
    """Forwards ``127.0.0.1:<port>`` to ``target``, one pair of threads per connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # the acceptor checks for close() this often
        self.port: int = self._listener.getsockname()[1]
        self._open = True
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._carried: set[socket.socket] = set()
        self.accepted = 0
        self._acceptor = threading.Thread(target=self._accept, name="forwarder", daemon=True)
        self._acceptor.start()

    def cut(self) -> None:
        """Reset every connection carried, and every new one until :meth:`restore`."""
        with self._lock:
            self._open = False
            carried, self._carried = self._carried, set()
        for sock in carried:
            _reset(sock)

    def restore(self) -> None:
        with self._lock:
            self._open = True

    def close(self) -> None:
        self._closed.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self.accepted += 1
            if not self._open:
                _reset(client)
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if not self._open:  # cut while this one was being connected
                    for sock in (client, upstream):
                        _reset(sock)
                        sock.close()
                    continue
                self._carried.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # Either side ended (or cut() reset both): end the other side as well.
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._carried.discard(src)
                self._carried.discard(dst)
            src.close()


def _reset(sock: socket.socket) -> None:
    """End ``sock`` with a reset (no orderly close): the peer's next read or write fails."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # Wakes the pump thread blocked in recv(); it closes the socket (sending the reset).
        sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def database_forwarder() -> Iterator[TcpForwarder]:
    """A forwarder in front of the test database's server."""
    db = connection.settings_dict
    forwarder = TcpForwarder((db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)))
    try:
        yield forwarder
    finally:
        forwarder.close()


@contextlib.contextmanager
def through(forwarder: TcpForwarder) -> Iterator[None]:
    """This process's database connections go through ``forwarder`` for the block."""
    db: dict[str, Any] = connection.settings_dict
    saved = db.get("HOST"), db.get("PORT")
    connection.close()
    db["HOST"], db["PORT"] = "127.0.0.1", forwarder.port
    try:
        yield
    finally:
        forwarder.restore()
        with contextlib.suppress(Exception):
            connection.close()
        db["HOST"], db["PORT"] = saved
