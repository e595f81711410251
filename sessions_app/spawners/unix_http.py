"""HTTP over a Unix socket: how the portal asks a local server whether it is up."""

from __future__ import annotations

import http.client
import socket


class UnixHTTPConnection(http.client.HTTPConnection):
    """An ``http.client`` connection to the server listening on the Unix socket ``path``."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def accepts(socket_path: str, timeout: float) -> bool:
    """Whether something accepts connections on the socket (cheap: no request)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path)
        except OSError:
            return False
    return True


def answers(socket_path: str, base_url: str, token: str, timeout: float) -> bool:
    """Whether the server on the socket knows this base URL and accepts this token."""
    connection = UnixHTTPConnection(socket_path, timeout)
    try:
        connection.request(
            "GET", f"{base_url}api/status", headers={"Authorization": f"token {token}"}
        )
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
