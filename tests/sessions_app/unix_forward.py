"""Reach a local server's Unix socket from tests written for HTTP over TCP.

:func:`forward` listens on a loopback port of the test process (root's: the packet filter
keeps sessions off loopback, so only the test uses it) and copies every connection to the
server's socket, byte for byte: the REST calls and the kernel websocket of
``tests/sessions_app/jupyter_kernel.py`` then work unchanged. The router's own tests go
through nginx instead.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


def _pump(source: socket.socket, dest: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            dest.sendall(data)
    with contextlib.suppress(OSError):
        dest.shutdown(socket.SHUT_WR)


def _serve(listener: socket.socket, socket_path: str) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # the listener was closed
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(socket_path)
        except OSError:
            client.close()
            upstream.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


@contextlib.contextmanager
def forward(socket_path: str) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` that leads to the server on ``socket_path``."""
    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=_serve, args=(listener, socket_path), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        # shutdown wakes the accept() of the serving thread; close alone may not.
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
