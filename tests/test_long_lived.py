"""WebSockets and streamed responses in a stop or a rolling restart.

Every service is ``tests/apps/long_lived_app.py``, run as real processes;
the clients are Tornado's WebSocket client and raw sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import re
import signal
import socket
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from support import Service, http_get
from tornado import websocket

APP = ["-m", "tests.apps.long_lived_app"]
T = TypeVar("T")


def run(scenario: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a client scenario on a loop of its own, bounded in time."""
    return asyncio.run(asyncio.wait_for(scenario, timeout))


async def connect(port: int, path: str = "/ws") -> tuple[Any, int]:
    """Open a WebSocket; return it and the pid its first message names."""
    client = await websocket.websocket_connect(f"ws://127.0.0.1:{port}{path}")
    first = await client.read_message()
    assert first is not None
    return client, int(json.loads(first)["pid"])


async def until_closed(client: Any) -> list[str | bytes]:
    """The messages a WebSocket receives until the server closes it."""
    messages = []
    while (message := await client.read_message()) is not None:
        messages.append(message)
    client.close()  # already closed; Tornado warns unless told so
    return messages


async def hang_up(client: Any) -> None:
    """Close a WebSocket and wait until the server has answered."""
    client.close()
    while await client.read_message() is not None:
        pass


def start(services: type[Service], **env: str) -> tuple[Service, int]:
    service = services(APP, env=env)
    port = service.wait_serving()
    workers = int(env.get("WORKERS", "1"))
    if workers > 1:
        service.wait_for(f"all {workers} workers ready")
    for _ in range(workers):
        service.wait_for("event: on_start")
    return service, port


def line_numbers(service: Service, pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return [index for index, line in enumerate(service.lines) if regex.search(line)]


def handshake(path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def read_head(sock: socket.socket) -> bytes:
    """Read a response's status line and headers (and whatever follows)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(4096)
        assert chunk, received
        received += chunk
    return received


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stop_closes_every_websocket_with_going_away(
    services: type[Service], workers: str
) -> None:
    service, port = start(services, WORKERS=workers)

    async def scenario() -> list[tuple[int, list[str | bytes], Any]]:
        clients = [await connect(port) for _ in range(6)]
        service.send(signal.SIGTERM)
        return [(pid, await until_closed(client), client) for client, pid in clients]

    for _, messages, client in run(scenario()):
        # The drain callback's last message, then the close frame.
        assert messages == ['{"drain": 1001}']
        assert (client.close_code, client.close_reason) == (1001, "server stopping")
    assert service.wait() == 0
    pids = {
        int(pid) for pid in re.findall(r"event: on_start pid=(\d+)", service.output)
    }
    assert len(pids) == int(workers)
    assert service.count("event: on_close code=1001") == 6
    for pid in pids:
        # Each handler's on_close (a coroutine here) finished before the
        # shutdown callbacks of its process began.
        closes = line_numbers(service, f"event: on_close code=1001 pid={pid}$")
        (shutdown,) = line_numbers(service, f"event: shutdown pid={pid}$")
        assert all(line < shutdown for line in closes)


def test_a_rolling_restart_closes_websockets_with_service_restart(
    services: type[Service],
) -> None:
    service, port = start(services, WORKERS="2")
    old = {int(pid) for pid in re.findall(r"worker (\d+) started", service.output)}

    async def follow(client: Any, pid: int) -> tuple[list[int], int]:
        """Reconnect at once after each close, until a new worker answers."""
        codes = []
        while pid in old:
            messages = await until_closed(client)
            assert messages == ['{"drain": 1012}']
            codes.append(client.close_code)
            client, pid = await connect(port)
        await hang_up(client)
        return codes, pid

    async def scenario() -> list[tuple[list[int], int]]:
        clients = [await connect(port) for _ in range(6)]
        assert {pid for _, pid in clients} <= old
        service.send(signal.SIGHUP)
        return await asyncio.gather(*(follow(*client) for client in clients))

    for codes, pid in run(scenario()):
        # Reconnected to the other old worker before its turn came, a client
        # is told again; every close says "restart", none "going away".
        assert codes and set(codes) == {1012}
        assert pid not in old
    service.wait_for("rolling restart finished")
    for pid in old:
        service.wait_for(f"worker {pid} exited with status 0")
    assert service.count("event: on_close code=1012") >= 6
    assert service.count("code=1001") == 0
    service.send(signal.SIGTERM)
    assert service.wait() == 0


def test_websockets_are_served_during_the_shutdown_delay(
    services: type[Service],
) -> None:
    delay = 2.0
    service, port = start(services, SHUTDOWN_DELAY=str(delay))

    async def scenario() -> tuple[list[str | bytes], Any, float]:
        client, _ = await connect(port)
        stopped = time.monotonic()
        service.send(signal.SIGTERM)
        await asyncio.to_thread(service.wait_for, "health check failing")
        client.write_message("still there?")
        assert await client.read_message() == "still there?"
        assert service.count(r"draining \(pid") == 0
        messages = await until_closed(client)
        return messages, client, time.monotonic() - stopped

    messages, client, open_for = run(scenario())
    assert messages == ['{"drain": 1001}']
    assert client.close_code == 1001
    assert open_for >= delay
    assert service.wait() == 0


def test_a_client_that_never_reads_cannot_hold_the_stop(
    services: type[Service],
) -> None:
    limit = 1.0
    service, port = start(services, SHUTDOWN_LIMIT=str(limit))
    with socket.socket() as client:
        # A small receive buffer, so that the 16 MB the server sends when
        # the socket opens stay stuck in its send buffer.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.settimeout(10)
        client.connect(("127.0.0.1", port))
        client.sendall(handshake("/flood"))
        assert read_head(client).startswith(b"HTTP/1.1 101 Switching Protocols")
        service.wait_for("event: flood open")
        # From here on the client reads nothing, and answers nothing.
        stopped = time.monotonic()
        service.send(signal.SIGTERM)
        assert service.wait() == 0
        took = time.monotonic() - stopped
    # Tornado alone would wait 5 s for the close handshake.
    assert took < limit + 2.0, took
    assert "closing 1 connection(s) still open after 1.0 s" in service.output
    (closed,) = line_numbers(service, "event: flood on_close")
    (shutdown,) = line_numbers(service, "event: shutdown")
    assert closed < shutdown


def test_handshakes_after_the_drain_began_are_refused(
    services: type[Service],
) -> None:
    service, port = start(services)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as early:
        # Answered on a later connection: the server accepted the earlier.
        assert http_get(port, "/")[0] == 200
        service.send(signal.SIGTERM)
        service.wait_for(r"draining \(pid")
        # A connection accepted before the drain, asking for a WebSocket
        # after it began: refused, never accepted and then cut.
        early.sendall(handshake("/ws"))
        head = read_head(early)
        assert head.startswith(b"HTTP/1.1 503 Service Unavailable"), head
        assert b"\r\nConnection: close\r\n" in head
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=10)
    assert service.wait() == 0


def test_a_stream_in_flight_runs_to_its_end(services: type[Service]) -> None:
    service, port = start(services, SHUTDOWN_LIMIT="10")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/stream?n=8&t=0.1")
        response = connection.getresponse()
        assert response.readline() == b"chunk 0\n"
        service.send(signal.SIGTERM)
        service.wait_for(r"draining \(pid")
        rest = response.read()
    finally:
        connection.close()
    assert rest == b"".join(f"chunk {n}\n".encode() for n in range(1, 8))
    assert service.wait() == 0
    assert "still open" not in service.output


def test_an_endless_stream_ends_when_the_drain_begins(
    services: type[Service],
) -> None:
    service, port = start(services, SHUTDOWN_LIMIT="30")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/endless")
        response = connection.getresponse()
        assert response.readline() == b"tick\n"
        stopped = time.monotonic()
        service.send(signal.SIGTERM)
        body = response.read()
    finally:
        connection.close()
    assert body.endswith(b"bye\n")
    assert service.wait() == 0
    # Not the 30 s of shutdown_limit: the stream noticed the drain.
    assert time.monotonic() - stopped < 5
    assert "still open" not in service.output
