"""A service with long-lived connections, for the drain tests.

Lifecycle events and handler events print ``event: NAME pid=N`` lines.

``/ws``
    A plain :class:`~tornado.websocket.WebSocketHandler`: sends
    ``{"pid": N}`` when open, echoes every message, and records its close
    in an ``async`` ``on_close`` that takes 0.2 s (as a write through a
    pool would).  A ``drain`` callback sends each open one
    ``{"drain": CODE}``.
``/flood``
    A WebSocket that sends 16 MB at once when open, more than a client that
    never reads lets through.
``/stream?n=N&t=T``
    ``N`` chunks, one every ``T`` seconds, each flushed.
``/endless``
    A chunk every 0.1 s until the drain begins, then ``bye``.
``/``
    ``{"pid": N}``.

``WORKERS`` is ``number_of_procs`` (default 1); ``SHUTDOWN_DELAY``,
``SHUTDOWN_LIMIT`` and ``PORT`` are read by :func:`sprockets_http.run`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from tornado import web, websocket

import sprockets_http
from sprockets_http import app, drain

OPEN: set[websocket.WebSocketHandler] = set()


def event(name: str) -> None:
    # One write per line: several processes may share this pipe.
    sys.stdout.write(f"event: {name} pid={os.getpid()}\n")
    sys.stdout.flush()


class EchoSocket(websocket.WebSocketHandler):
    def open(self) -> None:
        OPEN.add(self)
        self.write_message({"pid": os.getpid()})

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)

    async def on_close(self) -> None:  # type: ignore[override]
        OPEN.discard(self)
        await asyncio.sleep(0.2)
        event(f"on_close code={self.close_code}")


class FloodSocket(websocket.WebSocketHandler):
    def open(self) -> None:
        event("flood open")
        sending = self.write_message(b"x" * (16 << 20), binary=True)
        # It fails when the connection is aborted: nothing to report.
        sending.add_done_callback(lambda future: future.exception())

    def on_close(self) -> None:
        event("flood on_close")


class StreamHandler(web.RequestHandler):
    async def get(self) -> None:
        count = int(self.get_query_argument("n"))
        pause = float(self.get_query_argument("t"))
        for index in range(count):
            self.write(f"chunk {index}\n")
            await self.flush()
            if index == 0:
                event("stream started")
            await asyncio.sleep(pause)


class EndlessHandler(web.RequestHandler):
    async def get(self) -> None:
        notice = drain.notice(self.application)
        event("endless started")
        while not await notice.wait(timeout=0.1):
            self.write("tick\n")
            await self.flush()
        self.write("bye\n")


class PidHandler(web.RequestHandler):
    def get(self) -> None:
        self.write({"pid": os.getpid()})


def say_goodbye(application: web.Application) -> None:
    code = drain.notice(application).close_code
    event(f"drain callback code={code} open={len(OPEN)}")
    for socket in OPEN:
        socket.write_message(json.dumps({"drain": code}))


def make_app(**settings: Any) -> app.Application:
    application = app.Application(
        [
            ("/ws", EchoSocket),
            ("/flood", FloodSocket),
            ("/stream", StreamHandler),
            ("/endless", EndlessHandler),
            ("/", PidHandler),
        ],
        **settings,
    )
    application.on_start_callbacks.append(lambda app, io_loop: event("on_start"))
    application.on_drain_callbacks.append(say_goodbye)
    application.on_shutdown_callbacks.append(lambda app: event("shutdown"))
    return application


if __name__ == "__main__":
    sprockets_http.run(
        make_app, {"number_of_procs": int(os.environ.get("WORKERS", "1"))}
    )
