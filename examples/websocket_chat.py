"""A chat room over WebSockets, and what its clients see on a deploy.

Serve it, then connect a client or two::

    NUMBER_OF_PROCS=1 python -m examples.websocket_chat
    python -m examples.websocket_chat client ws://127.0.0.1:8000/chat

A message a member sends (from a browser's console:
``ws = new WebSocket("ws://127.0.0.1:8000/chat"); ws.send("hi")``) goes to
everybody in the room.  The room lives in one process: with several workers
(by default one per CPU) each has its own, which a real service would join
through a broker.

The handler is a plain :class:`tornado.websocket.WebSocketHandler`; the
runner finds its connections by itself.  On a deploy a client sees:

1. the last message of the ``drain`` callback below,
   ``{"system": "draining", "close_code": 1012}``;
2. the close frame: **1012** *server restarting* when its worker is
   replaced by SIGHUP (the client reconnects at once, and another worker
   answers), or **1001** *server stopping* when the service stops (the
   client waits before it tries again).

Nothing the client sent is lost: the server reads until the client
answers the close, and ``on_close`` runs before the ``shutdown``
callbacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

from tornado import websocket

import sprockets_http
from sprockets_http import app, drain

LOGGER = logging.getLogger("examples.websocket_chat")

RECONNECT_AT_ONCE = {1012}
"""Close codes after which a client reconnects without waiting."""


class ChatSocket(websocket.WebSocketHandler):
    """One member of the room."""

    def initialize(self, room: set[ChatSocket]) -> None:
        self.room = room

    def open(self) -> None:
        self.room.add(self)
        self.write_message({"system": "welcome", "pid": os.getpid()})

    def on_message(self, message: str | bytes) -> None:
        for member in self.room:
            member.write_message({"said": message})

    def on_close(self) -> None:
        self.room.discard(self)
        LOGGER.info("a member left (close code %s)", self.close_code)


def make_app(**settings: Any) -> app.Application:
    """The application factory."""
    room: set[ChatSocket] = set()

    def say_goodbye(application: Any) -> None:
        # The close frames follow; this is the moment for a last word.
        code = drain.notice(application).close_code
        for member in room:
            member.write_message({"system": "draining", "close_code": code})

    application = app.Application(
        [("/chat", ChatSocket, {"room": room})], service="websocket-chat", **settings
    )
    application.on_drain_callbacks.append(say_goodbye)
    return application


async def client(url: str) -> None:
    """Print what the room says, and reconnect the way a deploy asks to."""
    pause = 1.0
    while True:
        try:
            connection = await websocket.websocket_connect(url)
        except OSError as error:
            print(f"cannot connect ({error}), retrying in {pause:.0f} s", flush=True)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)
            continue
        print("connected", flush=True)
        pause = 1.0
        while (message := await connection.read_message()) is not None:
            print(json.loads(message), flush=True)
        code, reason = connection.close_code, connection.close_reason
        if code in RECONNECT_AT_ONCE:
            print(f"closed {code} {reason}: reconnecting at once", flush=True)
        else:
            print(f"closed {code} {reason}: reconnecting in {pause:.0f} s", flush=True)
            await asyncio.sleep(pause)


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        asyncio.run(client(sys.argv[2]))
    else:
        sprockets_http.run(make_app)
