"""Running one service process: its HTTP server, its signals and its drain.

:class:`Runner` takes an application, and :meth:`Runner.serve` takes it
through its whole life on the running asyncio loop:

1. run the ``before_run`` callbacks (a failure ends the process with status
   :data:`EXIT_START_FAILED` after the ``shutdown`` callbacks ran);
2. start accepting connections on sockets bound beforehand, then run the
   ``on_start`` callbacks;
3. on SIGTERM or SIGINT, mark the application as draining (so that
   :class:`~sprockets_http.health.HealthHandler` fails), keep serving for
   :attr:`Runner.shutdown_delay` seconds, then stop accepting, close idle
   keep-alive connections at once, let in-flight requests finish (for at
   most :attr:`Runner.shutdown_limit` seconds), run the ``shutdown``
   callbacks and return.

Nothing polls: the drain ends the moment the last connection closes, so an
idle service exits as soon as its ``shutdown`` callbacks are done.  A second
signal ends the ``shutdown_delay`` at once and stops waiting for in-flight
requests.

When the ``NOTIFY_SOCKET`` environment variable is set, the runner tells
systemd ``READY=1`` once it serves and ``STOPPING=1`` when a stop begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from tornado import http1connection, httpserver, httputil, ioloop, netutil, web

from sprockets_http import _lifecycle, _systemd
from sprockets_http.app import Callback, CallbackManager, wrap_application

EXIT_START_FAILED = 70
"""Exit status of a process whose ``before_run`` callbacks failed (EX_SOFTWARE)."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals that start a graceful stop."""

FIRST_REQUEST_GRACE = 1.0
"""Seconds a connection accepted just before a drain has to send a request.

A rolling restart stops a worker that may have just accepted a connection
whose request is still on its way; closing it would fail that request.  A
client that opens a connection and sends nothing (a pre-opened connection of
a browser or proxy) is closed after this long instead of holding the drain
for the whole ``shutdown_limit``.
"""

_SERVER_SETTINGS = (
    "max_body_size",
    "max_buffer_size",
    "max_header_size",
    "idle_connection_timeout",
    "body_timeout",
    "decompress_request",
    "trusted_downstream",
    "ssl_options",
)


def bind(port: int, address: str | None = None) -> list[socket.socket]:
    """Bind the listening sockets for ``port`` (0 picks a free port).

    :param port: the TCP port
    :param address: the address to bind; :data:`None` binds every interface
    :raises OSError: when the port cannot be bound
    """
    return netutil.bind_sockets(port, address=address)


def serve_until_stopped(
    make_runner: Callable[[], Runner],
    sockets: list[socket.socket],
    on_ready: Callable[[Runner], None] | None = None,
) -> None:
    """Run :meth:`Runner.serve` in a new asyncio loop; the blocking part.

    :param make_runner: called inside the running loop, so that the
        application and whatever it creates belong to that loop
    :param sockets: the bound listening sockets
    :param on_ready: passed to :meth:`Runner.serve`
    :raises SystemExit: with the status :meth:`Runner.serve` returned
        when it is not 0; with :data:`EXIT_START_FAILED` when
        ``make_runner`` raised
    """

    async def main() -> int:
        try:
            runner = make_runner()
        except Exception:
            logging.getLogger("sprockets_http.runner").exception(
                "creating the application failed"
            )
            return EXIT_START_FAILED
        return await runner.serve(sockets, on_ready)

    status = asyncio.run(main())
    if status:
        raise SystemExit(status)


class Runner:
    """Runs an application in this process until it is told to stop.

    :param app: the application; a plain :class:`tornado.web.Application`
        is wrapped with :func:`~sprockets_http.app.wrap_application`
    :param before_run: callback(s) added to the ``before_run`` phase
    :param on_start: callback(s) added to the ``on_start`` phase
    :param shutdown: callback(s) added to the ``shutdown`` phase

    .. attribute:: shutdown_limit

       Seconds in-flight requests may take to finish once a stop signal
       arrived, and seconds each ``shutdown`` callback may take.
       Default 5.

    .. attribute:: shutdown_delay

       Seconds the service keeps accepting and serving after the first stop
       signal, while its health check already fails, so that load balancers
       take it out of rotation before it stops listening.  Default 0.

       .. versionadded:: 3.0.0

    .. attribute:: wait_timeout

       Kept for compatibility with ``sprockets.http``; nothing polls any
       more, so it has no effect.
    """

    def __init__(
        self,
        app: web.Application | CallbackManager,
        before_run: Callback | Iterable[Callback] | None = None,
        on_start: Callback | Iterable[Callback] | None = None,
        shutdown: Callback | Iterable[Callback] | None = None,
    ) -> None:
        self.application = wrap_application(app, before_run, on_start, shutdown)
        self.logger = logging.getLogger("sprockets_http.runner")
        self.server: _DrainingHTTPServer | None = None
        self.shutdown_limit = 5.0
        self.shutdown_delay = 0.0
        self.wait_timeout = 1.0
        self._stop_signal: asyncio.Future[int] | None = None
        self._hurry: asyncio.Event | None = None

    @property
    def stop_budget(self) -> float:
        """The longest a graceful stop may take, in seconds.

        ``shutdown_delay`` + ``shutdown_limit`` for the drain +
        ``shutdown_limit`` per step of the ``shutdown`` phase, callbacks and
        extension hooks alike (each is cancelled when it takes longer).  A
        synchronous step that blocks cannot be cancelled, so this is a
        promise only for well-behaved ones.

        .. versionadded:: 3.0.0
        """
        steps = len(self.application.phase_steps("shutdown"))
        return self.shutdown_delay + self.shutdown_limit * (1 + steps)

    def run(self, port: int, number_of_procs: int = 0) -> None:
        """Bind ``port`` and serve until a stop signal; the blocking entry point.

        :param port: the TCP port to listen on
        :param number_of_procs: how many processes to run, see
            :func:`sprockets_http.supervisor.process_count`; with more than
            one, this application is created once here and every worker
            process serves its own copy of it
        :raises SystemExit: with :data:`EXIT_START_FAILED` when a
            ``before_run`` callback failed, and with the statuses listed in
            :mod:`sprockets_http.supervisor` for several processes

        It creates and runs its own asyncio loop with :func:`asyncio.run`,
        in each worker process when there are several.
        """
        # The supervisor is built on this module, hence the late import.
        from sprockets_http import supervisor

        processes = supervisor.process_count(
            number_of_procs, bool(self.application.settings.get("debug"))
        )
        supervisor.serve(lambda: self, bind(port), processes)

    async def serve(
        self,
        sockets: list[socket.socket],
        on_ready: Callable[[Runner], None] | None = None,
    ) -> int:
        """Take the application through its whole life on the running loop.

        :param sockets: listening sockets, bound beforehand (see :func:`bind`)
        :param on_ready: called with this runner once the ``before_run``
            callbacks are done and the sockets accept connections
        :returns: 0 after a graceful stop, :data:`EXIT_START_FAILED` when a
            ``before_run`` callback failed

        SIGTERM and SIGINT are handled through the running loop while this
        runs, and restored to their previous handling when it returns.

        .. versionadded:: 3.0.0
        """
        io_loop = ioloop.IOLoop.current()
        loop = asyncio.get_running_loop()
        self._stop_signal = loop.create_future()
        self._hurry = asyncio.Event()
        for signo in STOP_SIGNALS:
            loop.add_signal_handler(signo, self._on_signal, signo)
        try:
            try:
                await self.application.run_before_run(io_loop, self.shutdown_limit)
            except Exception:
                self.logger.critical("before_run failed, not serving")
                return EXIT_START_FAILED
            if not self._stop_signal.done():
                self._listen(sockets)
                _systemd.notify("READY=1")
                if on_ready is not None:
                    on_ready(self)
                on_start = asyncio.ensure_future(self.application.run_on_start(io_loop))
                await self._stop_signal
                await self._serve_while_failing_health()
                on_start.cancel()  # a slow on_start must not outlive the service
            await _lifecycle.run_steps(
                "drain",
                [_lifecycle.Step("stop accepting and finish requests", self._drain)],
                stop_on_failure=False,
            )
            await self.application.run_shutdown(self.shutdown_limit)
            self.logger.info("stopped (pid %d)", os.getpid())
            return 0
        finally:
            for signo in STOP_SIGNALS:
                loop.remove_signal_handler(signo)
            for sock in sockets:
                sock.close()

    def start_server(self, port: int, number_of_procs: int = 0) -> None:
        """Bind ``port`` and start accepting connections on the current loop.

        :param port: the TCP port to listen on
        :param number_of_procs: accepted for compatibility; one process

        :meth:`serve` does this itself; call this only to drive the loop
        yourself.
        """
        self._listen(bind(port))

    def stop_server(self) -> None:
        """Stop accepting connections and close idle keep-alive connections.

        In-flight requests carry on; their connections close as they finish.
        """
        if self.server is not None:
            self.server.begin_drain()

    def request_stop(self, signo: int = signal.SIGTERM) -> None:
        """Start a graceful stop as if ``signo`` had been received.

        .. versionadded:: 3.0.0
        """
        self._on_signal(signo)

    def _listen(self, sockets: list[socket.socket]) -> None:
        settings = self.application.settings
        options: dict[str, Any] = {
            key: settings[key] for key in _SERVER_SETTINGS if key in settings
        }
        self.server = _DrainingHTTPServer(
            self.application.tornado_application,
            xheaders=settings.get("xheaders", True),
            **options,
        )
        self.server.add_sockets(sockets)
        ports = sorted({sock.getsockname()[1] for sock in sockets})
        self.logger.info(
            "serving on port %s (pid %d)", ", ".join(map(str, ports)), os.getpid()
        )

    def _on_signal(self, signo: int) -> None:
        name = signal.Signals(signo).name
        if self._stop_signal is None or self._hurry is None:
            return
        if not self._stop_signal.done():
            self.logger.info("received %s, stopping (pid %d)", name, os.getpid())
            _mark_draining(self.application.tornado_application)
            _systemd.notify("STOPPING=1")
            self._stop_signal.set_result(signo)
            return
        self.logger.warning(
            "received %s again, not waiting any longer (pid %d)", name, os.getpid()
        )
        self._hurry.set()
        if self.server is not None:
            self.server.abandon_drain()

    async def _serve_while_failing_health(self) -> None:
        assert self._hurry is not None
        if self.shutdown_delay <= 0 or self._hurry.is_set():
            return
        self.logger.info(
            "health check failing, still serving for %.1f s (pid %d)",
            self.shutdown_delay,
            os.getpid(),
        )
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), self.shutdown_delay)

    async def _drain(self) -> None:
        if self.server is None:
            return
        self.logger.info("draining (pid %d)", os.getpid())
        self.server.begin_drain()
        left = await self.server.wait_drained(self.shutdown_limit)
        if left:
            self.logger.warning(
                "closing %d connection(s) with requests still in flight", left
            )
            await self.server.close_all_connections()
        self.logger.info("drained (pid %d)", os.getpid())


def _mark_draining(tornado_application: web.Application) -> None:
    # HealthHandler reads this attribute; a plain Tornado application, which
    # does not declare it, gets it too.
    application: Any = tornado_application
    application.draining = True


class _DrainingHTTPServer(httpserver.HTTPServer):
    """An :class:`~tornado.httpserver.HTTPServer` that can drain.

    It knows which connections sit idle between requests.  Once draining,
    it closes idle connections at once and every other connection as soon
    as its request is answered, and resolves a future when none are left.

    A connection that has not sent its first request yet is not closed at
    once: it was accepted just before the drain and its request may be on
    its way.  It gets :data:`FIRST_REQUEST_GRACE` seconds to send it.
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
        elif self._draining:
            conn.stream.close()
            return delegate
        else:
            waiting = self._idle
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
        """Stop listening, close idle connections, and silent ones soon.

        Connections that have not sent a request yet get
        :data:`FIRST_REQUEST_GRACE` seconds to send one.
        """
        if self._draining:
            return
        self.stop()
        self._draining = True
        self._drained = asyncio.get_running_loop().create_future()
        for conn in list(self._idle):
            conn.stream.close()
        if self._silent:
            asyncio.get_running_loop().call_later(
                FIRST_REQUEST_GRACE, self._close_silent
            )
        if not self._connections:
            self._drain_done()

    def _close_silent(self) -> None:
        for conn in list(self._silent):
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
