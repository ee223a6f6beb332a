"""Draining: stopping a server without failing the requests it has.

:class:`DrainingHTTPServer` is the :class:`tornado.httpserver.HTTPServer`
the runner serves with.  It knows which connections sit idle between
requests, so that when the runner drains it, it can stop listening, answer
what still arrives with ``Connection: close``, close idle connections once
they have been quiet for a moment, and say when none is left.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import asyncio
import contextlib
import typing
from collections.abc import Awaitable
from typing import Any

from tornado import http1connection, httpserver, httputil

FIRST_REQUEST_GRACE = 1.0
"""Seconds a connection accepted just before a drain has to send a request.

A rolling restart stops a worker that may have just accepted a connection
whose request is still on its way; closing it would fail that request.  A
client that opens a connection and sends nothing (a pre-opened connection of
a browser or proxy) is closed after this long instead of holding the drain
for the whole ``shutdown_limit``.
"""

KEEP_ALIVE_QUIET = 0.5
"""Seconds an idle keep-alive connection stays open once a drain began.

A client may be sending its next request on a kept-alive connection at the
very moment the drain begins; closing the connection then would fail that
request.  So once draining, every request is answered with
``Connection: close`` (the client's next request opens a new connection,
which another process accepts), and a connection waiting for a request is
closed only after it has been quiet this long.
"""


class DrainingHTTPServer(httpserver.HTTPServer):
    """An :class:`~tornado.httpserver.HTTPServer` that can drain.

    It knows which connections sit idle between requests.  Once draining,
    it answers every request with ``Connection: close``, closes idle
    connections after :data:`KEEP_ALIVE_QUIET` seconds without a request,
    and resolves a future when none are left.

    A connection that has not sent its first request yet gets
    :data:`FIRST_REQUEST_GRACE` seconds to send it: it was accepted just
    before the drain and its request may be on its way.
    """

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        # Every open connection is in _accepted.  Those waiting for their
        # first request are also in _silent; those waiting for a later one
        # (idle keep-alive connections) are also in _idle.
        self._accepted: set[http1connection.HTTP1ServerConnection] = set()
        self._silent: set[http1connection.HTTP1ServerConnection] = set()
        self._idle: set[http1connection.HTTP1ServerConnection] = set()
        self._draining = False
        self._drained: asyncio.Future[None] | None = None

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        # Tornado calls this when a connection starts waiting for its next
        # request: right after it was accepted, and after each answer.
        conn = typing.cast(http1connection.HTTP1ServerConnection, server_conn)
        delegate = super().start_request(server_conn, request_conn)
        if conn not in self._accepted:
            self._accepted.add(conn)
            waiting = self._silent
        else:
            waiting = self._idle
            if self._draining:
                self._close_when_quiet(conn)
        waiting.add(conn)
        return _RequestTracker(delegate, waiting, conn)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        conn = typing.cast(http1connection.HTTP1ServerConnection, server_conn)
        self._accepted.discard(conn)
        self._silent.discard(conn)
        self._idle.discard(conn)
        if self._draining and not self._connections:
            self._drain_done()

    def begin_drain(self) -> None:
        """Stop listening and let connections finish.

        From now on every request is answered with ``Connection: close``.
        Idle connections are closed once quiet for
        :data:`KEEP_ALIVE_QUIET` seconds; connections that have not sent a
        request yet get :data:`FIRST_REQUEST_GRACE` seconds to send one.
        """
        if self._draining:
            return
        self.stop()
        self._draining = True
        # Read as each request's headers arrive: the answer says
        # "Connection: close" and the connection closes after it.
        self.conn_params.no_keep_alive = True
        self._drained = asyncio.get_running_loop().create_future()
        for conn in self._idle:
            self._close_when_quiet(conn)
        if self._silent:
            asyncio.get_running_loop().call_later(
                FIRST_REQUEST_GRACE, self._close_silent
            )
        if not self._connections:
            self._drain_done()

    def _close_silent(self) -> None:
        for conn in list(self._silent):
            conn.stream.close()

    def _close_when_quiet(self, conn: http1connection.HTTP1ServerConnection) -> None:
        # A request arriving meanwhile takes the connection out of _idle.
        asyncio.get_running_loop().call_later(
            KEEP_ALIVE_QUIET, self._close_if_idle, conn
        )

    def _close_if_idle(self, conn: http1connection.HTTP1ServerConnection) -> None:
        if conn in self._idle:
            conn.stream.close()

    def abandon_drain(self) -> None:
        """Stop waiting for the connections still open."""
        self._drain_done()

    def _drain_done(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def wait_drained(self, timeout: float) -> int:
        """Wait until every connection closed, or ``timeout`` seconds.

        :returns: how many connections are still open
        """
        assert self._drained is not None, "begin_drain() first"
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._drained, timeout)
        return len(self._connections)


class _RequestTracker(httputil.HTTPMessageDelegate):
    """Takes a connection out of a waiting set once a request's headers arrive."""

    def __init__(
        self,
        delegate: httputil.HTTPMessageDelegate,
        waiting: set[http1connection.HTTP1ServerConnection],
        conn: http1connection.HTTP1ServerConnection,
    ) -> None:
        self._delegate = delegate
        self._waiting = waiting
        self._conn = conn

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        self._waiting.discard(self._conn)
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._delegate.data_received(chunk)

    def finish(self) -> None:
        self._delegate.finish()

    def on_connection_close(self) -> None:
        self._delegate.on_connection_close()
