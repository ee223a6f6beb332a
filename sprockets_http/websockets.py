"""The open WebSockets of an application, told to go when their process drains.

A WebSocket outlives the HTTP request that opened it: once Tornado has
answered the handshake, the connection leaves the HTTP server, which can no
longer see it.  :class:`OpenWebSockets` keeps track of every WebSocket of one
application so that a drain can close each with a close frame (1001 *Going
Away* when the service stops, 1012 *Service Restart* when this process is
replaced while the service goes on), refuse new handshakes, and abort what
its client does not close in time.

It needs nothing from the application: any subclass of
:class:`tornado.websocket.WebSocketHandler` is tracked.  Tornado creates
every request handler through the application's
:meth:`~tornado.web.Application.get_handler_delegate`;
:meth:`OpenWebSockets.of` wraps that method on the one application served
(nothing in Tornado is changed for other applications), and serves each
WebSocket handler class through a subclass made once per class, which adds
to the class's own ``prepare``, ``open`` and ``on_close`` what tracking
needs.  ``isinstance`` checks hold; ``type(self)`` is that subclass, with
the class's name.

Served this way, ``on_close`` may also be a coroutine function: the drain
waits for it, so that it can still use a connection pool that a
``shutdown`` callback closes afterwards.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import types
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, cast

from tornado import httputil, iostream, web, websocket

GOING_AWAY = 1001
"""The close code of a WebSocket whose service stops (RFC 6455)."""

SERVICE_RESTART = 1012
"""The close code of a WebSocket whose process is replaced by another while
the service goes on: the client may reconnect at once (IANA registry)."""

LOGGER = logging.getLogger("sprockets_http.websockets")


def drain_close(replacing: bool) -> tuple[int, str]:
    """The close code and reason a drain sends every WebSocket.

    :param replacing: whether the process is replaced while the service
        goes on (:data:`SERVICE_RESTART`), rather than the service stopping
        (:data:`GOING_AWAY`)
    """
    if replacing:
        return SERVICE_RESTART, "server restarting"
    return GOING_AWAY, "server stopping"


_TRACKERS: weakref.WeakKeyDictionary[web.Application, OpenWebSockets] = (
    weakref.WeakKeyDictionary()
)


class OpenWebSockets:
    """Every open WebSocket of one application.

    Get an application's with :meth:`of`; the
    :class:`~sprockets_http.drain.DrainingHTTPServer` serving it does.

    .. attribute:: on_closed

       Called with no argument each time a tracked WebSocket has closed and
       its handler's ``on_close`` has finished; :data:`None` by default.
    """

    def __init__(self) -> None:
        # Each open handler and its stream, kept to abort the connection
        # once the handler has forgotten it (WebSocketHandler.close does).
        self._open: dict[websocket.WebSocketHandler, iostream.IOStream | None] = {}
        self._closing: tuple[int, str] | None = None
        self._subclasses: dict[type[websocket.WebSocketHandler], type[Any]] = {}
        self._all_closed: asyncio.Future[None] | None = None
        self.on_closed: Callable[[], None] | None = None

    @classmethod
    def of(cls, application: web.Application) -> OpenWebSockets:
        """The tracker of ``application``, which starts tracking on first use.

        :param application: the Tornado application (not a
            :class:`~sprockets_http.app.CallbackManager` adapter)

        Only handshakes that start after this call are tracked.  Calling it
        again returns the same tracker.
        """
        tracker = _TRACKERS.get(application)
        if tracker is None:
            tracker = _TRACKERS[application] = cls()
            tracker._wrap(application)
        return tracker

    def __len__(self) -> int:
        """How many WebSockets are open (or closing)."""
        return len(self._open)

    @property
    def closing(self) -> tuple[int, str] | None:
        """The close code and reason once :meth:`close_all` was called."""
        return self._closing

    def close_all(self, code: int, reason: str) -> None:
        """Send every open WebSocket a close frame; refuse new handshakes.

        :param code: the close code, e.g. :data:`GOING_AWAY`
        :param reason: a short reason for the client (at most 123 bytes)

        Each handler's ``on_close`` runs when its client answers the close
        (or the connection drops).  A handshake that arrives from now on is
        answered ``503 Service Unavailable``; one already past its
        ``prepare`` is closed with the same code as soon as it is open.
        """
        self._closing = (code, reason)
        for handler in list(self._open):
            handler.close(code, reason)

    async def wait_closed(self, timeout: float) -> int:
        """Wait until every WebSocket has closed, or ``timeout`` seconds.

        :returns: how many are still open
        """
        if self._open:
            if self._all_closed is None or self._all_closed.done():
                self._all_closed = asyncio.get_running_loop().create_future()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._all_closed), timeout)
        return len(self._open)

    def abort_all(self) -> int:
        """Close the connection of every WebSocket still open, at once.

        For clients that do not answer a close frame.  Each handler's
        ``on_close`` then runs as the connection drops; :meth:`wait_closed`
        waits for that.

        :returns: how many were aborted
        """
        streams = [stream for stream in self._open.values() if stream is not None]
        for stream in streams:
            stream.close()
        return len(streams)

    # -- the tracking ------------------------------------------------------

    def _wrap(self, application: web.Application) -> None:
        get_delegate = application.get_handler_delegate

        def get_handler_delegate(
            request: httputil.HTTPServerRequest,
            target_class: type[web.RequestHandler],
            target_kwargs: dict[str, Any] | None = None,
            path_args: list[bytes] | None = None,
            path_kwargs: dict[str, bytes] | None = None,
        ) -> httputil.HTTPMessageDelegate:
            if issubclass(target_class, websocket.WebSocketHandler):
                target_class = self._tracked(target_class)
            return get_delegate(
                request, target_class, target_kwargs, path_args, path_kwargs
            )

        # On this instance only: a method of its class would change every
        # application, and a plain tornado.web.Application has no hook.
        setattr(application, "get_handler_delegate", get_handler_delegate)  # noqa: B010

    def _tracked(
        self, handler_class: type[websocket.WebSocketHandler]
    ) -> type[websocket.WebSocketHandler]:
        if issubclass(handler_class, _Tracked):
            return handler_class
        subclass = self._subclasses.get(handler_class)
        if subclass is None:
            names = {
                "_open_websockets": self,
                "__module__": handler_class.__module__,
                "__qualname__": handler_class.__qualname__,
                "__doc__": handler_class.__doc__,
            }
            # _Tracked first, so that its methods wrap the class's own.
            subclass = types.new_class(
                handler_class.__name__,
                (_Tracked, handler_class),
                exec_body=lambda namespace: namespace.update(names),
            )
            self._subclasses[handler_class] = subclass
        return subclass

    def _opened(self, handler: websocket.WebSocketHandler) -> None:
        protocol = handler.ws_connection
        self._open[handler] = protocol.stream if protocol is not None else None
        if self._closing is not None:
            # The drain began while this handshake was under way.
            asyncio.get_running_loop().call_soon(handler.close, *self._closing)

    def _closed(self, handler: websocket.WebSocketHandler) -> None:
        if self._open.pop(handler, False) is False:
            return
        if not self._open and self._all_closed and not self._all_closed.done():
            self._all_closed.set_result(None)
        if self.on_closed is not None:
            self.on_closed()

    def _close_after(
        self, handler: websocket.WebSocketHandler, closing: Awaitable[object]
    ) -> None:
        def done(task: asyncio.Future[object]) -> None:
            if not task.cancelled() and task.exception() is not None:
                LOGGER.error(
                    "on_close of %s failed",
                    type(handler).__qualname__,
                    exc_info=task.exception(),
                )
            self._closed(handler)

        asyncio.ensure_future(closing).add_done_callback(done)


class _Tracked(websocket.WebSocketHandler):
    """Placed before a WebSocket handler class to report to its tracker."""

    _open_websockets: ClassVar[OpenWebSockets]

    def prepare(self) -> Awaitable[None] | None:
        if self._open_websockets.closing is not None:
            # Refused before the handshake: never accepted, then cut.
            raise web.HTTPError(503)
        return super().prepare()

    def open(self, *args: str, **kwargs: str) -> Awaitable[None] | None:
        self._open_websockets._opened(self)
        return super().open(*args, **kwargs)

    def on_close(self) -> None:
        try:
            # on_close is typed to return None; served here, a coroutine
            # function is awaited.
            result = cast("Callable[[], object]", super().on_close)()
        except BaseException:
            self._open_websockets._closed(self)
            raise
        if inspect.isawaitable(result):
            self._open_websockets._close_after(self, result)
        else:
            self._open_websockets._closed(self)
