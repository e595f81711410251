"""Run code in a kernel of a running Jupyter server, the way JupyterLab does it.

The kernel is started over the REST API and the code is sent as an ``execute_request`` on the
kernel's websocket channel (Jupyter's JSON message protocol, no subprotocol).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


@dataclass(frozen=True)
class Execution:
    """What the kernel answered: ``status`` is ``ok`` or ``error`` (then ``ename`` names it)."""

    status: str
    ename: str
    stdout: str


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def start_kernel(server_url: str, token: str) -> str:
    """Start a ``python3`` kernel on the server at ``server_url`` (ending in the base URL)."""
    response = requests.post(
        f"{server_url}api/kernels", headers=_auth(token), json={"name": "python3"}, timeout=30
    )
    response.raise_for_status()
    return str(response.json()["id"])


def execute(
    server_url: str, token: str, kernel_id: str, code: str, timeout: float = 60.0
) -> Execution:
    """Run ``code`` in the kernel and wait for its reply and for the kernel to be idle again."""
    return asyncio.run(asyncio.wait_for(_execute(server_url, token, kernel_id, code), timeout))


async def _execute(server_url: str, token: str, kernel_id: str, code: str) -> Execution:
    channel_url = (
        server_url.replace("http://", "ws://", 1)
        + f"api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}"
    )
    connection = await websocket_connect(HTTPRequest(channel_url, headers=_auth(token)))
    msg_id = uuid.uuid4().hex
    request = {
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": uuid.uuid4().hex,
            "username": "test",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "buffers": [],
        "channel": "shell",
    }
    await connection.write_message(json.dumps(request))
    reply: dict[str, str] | None = None
    idle = False
    stdout: list[str] = []
    try:
        # The reply (shell) and the idle status (iopub) come on different channels, in any order.
        while reply is None or not idle:
            raw = await connection.read_message()
            if raw is None:
                raise ConnectionError("the kernel's channel closed before the reply")
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            content = message["content"]
            if message["msg_type"] == "execute_reply":
                reply = content
            elif message["msg_type"] == "stream" and content["name"] == "stdout":
                stdout.append(content["text"])
            elif message["msg_type"] == "status":
                idle = content["execution_state"] == "idle"
    finally:
        connection.close()
    return Execution(reply["status"], reply.get("ename", ""), "".join(stdout))
