"""Draining: stopping a server without failing the requests it has.

:class:`DrainingHTTPServer` is the :class:`tornado.httpserver.HTTPServer`
the runner serves with.  It knows which connections sit idle between
requests, and which WebSockets are open (see
:mod:`sprockets_http.websockets`), so that when the runner drains it, it can
stop listening, answer what still arrives with ``Connection: close``, close
idle connections once they have been quiet for a moment, tell every
WebSocket to go, and say when no connection is left.

:func:`notice` tells the code serving an application that its process began
to drain, so that a long poll or an endless stream can finish early.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import asyncio
import contextlib
import typing
import weakref
from collections.abc import Awaitable
from typing import Any

from tornado import http1connection, httputil, web

from sprockets_http import websockets
from sprockets_http.forwarded import ForwardedHTTPServer

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

ABORT_GRACE = 1.0
"""Seconds the handlers of aborted WebSockets get to finish their ``on_close``.

An aborted connection's ``on_close`` runs at once unless the handler is
still busy with a message.
"""


class DrainingHTTPServer(ForwardedHTTPServer):
    """An :class:`~tornado.httpserver.HTTPServer` that can drain.

    It believes forwarding headers only from the peers its
    ``forwarded_allow_ips`` argument allows (see
    :class:`~sprockets_http.forwarded.ForwardedHTTPServer`).

    It knows which connections sit idle between requests and, when it
    serves a :class:`tornado.web.Application`, which WebSockets are open
    (:class:`~sprockets_http.websockets.OpenWebSockets`).  Once draining,
    it answers every request with ``Connection: close``, closes idle
    connections after :data:`KEEP_ALIVE_QUIET` seconds without a request,
    sends every WebSocket a close frame, and resolves a future when no
    connection and no WebSocket is left.

    A connection that has not sent its first request yet gets
    :data:`FIRST_REQUEST_GRACE` seconds to send it: it was accepted just
    before the drain and its request may be on its way.

    .. attribute:: requests_received

       How many requests have arrived (their headers did) since it started.

       .. versionadded:: 3.0.0
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
        self.requests_received = 0
        self._websockets: websockets.OpenWebSockets | None = None
        if isinstance(self.request_callback, web.Application):
            self._websockets = websockets.OpenWebSockets.of(self.request_callback)
            self._websockets.on_closed = self._check_drained

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        # Tornado calls this when a connection starts waiting for its next
        # request: right after it was accepted, and after each answer.  It
        # passes its HTTP1ServerConnection (typed as object); an annotation
        # says so at no cost, where typing.cast() is a call per request.
        conn: http1connection.HTTP1ServerConnection = server_conn  # type: ignore[assignment]
        delegate = super().start_request(server_conn, request_conn)
        if conn not in self._accepted:
            self._accepted.add(conn)
            waiting = self._silent
        else:
            waiting = self._idle
            if self._draining:
                self._close_when_quiet(conn)
        waiting.add(conn)
        return _RequestTracker(self, delegate, waiting, conn)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        conn = typing.cast(http1connection.HTTP1ServerConnection, server_conn)
        self._accepted.discard(conn)
        self._silent.discard(conn)
        self._idle.discard(conn)
        self._check_drained()

    def begin_drain(self, *, replacing: bool = False) -> None:
        """Stop listening, let connections finish, tell WebSockets to go.

        :param replacing: this process is replaced by another while the
            service goes on: WebSockets are closed with
            :data:`~sprockets_http.websockets.SERVICE_RESTART` (1012)
            instead of :data:`~sprockets_http.websockets.GOING_AWAY` (1001)

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
        if self._websockets is not None:
            self._websockets.close_all(*websockets.drain_close(replacing))
        self._check_drained()

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

    def _check_drained(self) -> None:
        if self._draining and not self._connections and not self._open_websockets:
            self._drain_done()

    @property
    def _open_websockets(self) -> int:
        return 0 if self._websockets is None else len(self._websockets)

    def abandon_drain(self) -> None:
        """Stop waiting for the connections still open."""
        self._drain_done()

    def _drain_done(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def wait_drained(self, timeout: float) -> int:
        """Wait until every connection closed, or ``timeout`` seconds.

        :returns: how many connections (WebSockets included) are still open
        """
        assert self._drained is not None, "begin_drain() first"
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._drained, timeout)
        return len(self._connections) + self._open_websockets

    async def close_all_connections(self) -> None:
        """Close every connection, WebSockets included, without waiting more.

        The handlers of aborted WebSockets get :data:`ABORT_GRACE` seconds
        to finish their ``on_close``.
        """
        if self._websockets is not None and self._websockets.abort_all():
            await self._websockets.wait_closed(ABORT_GRACE)
        await super().close_all_connections()


class DrainNotice:
    """Whether the process serving an application began to drain, and why.

    Get an application's with :func:`notice`.  The runner sets it when the
    drain begins: after ``shutdown_delay``, before the ``drain`` callbacks
    run and the WebSockets are told to go.  A request in flight then has
    ``shutdown_limit`` seconds to finish; a long poll or an endless stream
    that waits on this notice can finish at once instead::

        notice = drain.notice(self.application)
        while not await notice.wait(timeout=1.0):
            self.write(tick())
            await self.flush()

    .. versionadded:: 3.0.0
    """

    def __init__(self) -> None:
        # asyncio.Event binds to a loop when first waited for, not here.
        self._event = asyncio.Event()
        self._replacing = False

    def is_set(self) -> bool:
        """Whether the drain began."""
        return self._event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until the drain begins, or ``timeout`` seconds.

        :returns: whether the drain began
        """
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        return self._event.is_set()

    @property
    def replacing(self) -> bool:
        """Whether this process is replaced while the service goes on
        (a rolling restart), rather than the service stopping."""
        return self._replacing

    @property
    def close_code(self) -> int:
        """The close code the drain sends WebSockets:
        :data:`~sprockets_http.websockets.SERVICE_RESTART` when
        :attr:`replacing`, else
        :data:`~sprockets_http.websockets.GOING_AWAY`."""
        return websockets.drain_close(self._replacing)[0]

    def set(self, *, replacing: bool = False) -> None:
        """Say that the drain began; the runner calls this.

        :param replacing: see :attr:`replacing`
        """
        self._replacing = replacing
        self._event.set()


_NOTICES: weakref.WeakKeyDictionary[web.Application, DrainNotice] = (
    weakref.WeakKeyDictionary()
)


def notice(application: web.Application) -> DrainNotice:
    """The :class:`DrainNotice` of ``application``, created on first use.

    :param application: the Tornado application, e.g. a handler's
        ``self.application``

    .. versionadded:: 3.0.0
    """
    found = _NOTICES.get(application)
    if found is None:
        found = _NOTICES[application] = DrainNotice()
    return found


class _RequestTracker(httputil.HTTPMessageDelegate):
    """Takes a connection out of a waiting set once a request's headers arrive."""

    def __init__(
        self,
        server: DrainingHTTPServer,
        delegate: httputil.HTTPMessageDelegate,
        waiting: set[http1connection.HTTP1ServerConnection],
        conn: http1connection.HTTP1ServerConnection,
    ) -> None:
        self._server = server
        self._delegate = delegate
        self._waiting = waiting
        self._conn = conn

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        self._waiting.discard(self._conn)
        self._server.requests_received += 1
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._delegate.data_received(chunk)

    def finish(self) -> None:
        self._delegate.finish()

    def on_connection_close(self) -> None:
        self._delegate.on_connection_close()
