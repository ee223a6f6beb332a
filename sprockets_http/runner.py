"""Running one service process: its HTTP server, its signals and its drain.

:class:`Runner` takes an application through its whole life in this
process, on an asyncio loop that :func:`serve_until_stopped` creates:

1. run the ``before_run`` callbacks before the loop runs (a failure ends the
   process with status :data:`EXIT_START_FAILED` after the ``shutdown``
   callbacks ran);
2. start accepting connections on sockets bound beforehand, then start the
   ``on_start`` callbacks;
3. on SIGTERM or SIGINT, or when the application calls
   :meth:`~sprockets_http.app.CallbackManager.stop`, mark the application as
   draining (so that :class:`~sprockets_http.health.HealthHandler` fails),
   keep serving for :attr:`Runner.shutdown_delay` seconds, then drain:
   set the application's :func:`~sprockets_http.drain.notice`, run the
   ``drain`` callbacks, stop accepting, answer what still arrives with
   ``Connection: close``, close idle keep-alive connections once quiet,
   send every WebSocket a close frame, and let in-flight requests and the
   WebSockets' close handshakes finish (for at most
   :attr:`Runner.shutdown_limit` seconds, after which what is left is
   aborted); then run the
   ``shutdown`` callbacks, give tasks still pending on the loop
   ``shutdown_limit`` seconds to finish, and return.

A worker that a supervisor replaces (see :meth:`Runner.request_stop`)
stops the same way without ``shutdown_delay`` and without failing the
health check: the service as a whole stays up.

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
from collections.abc import Callable, Iterable
from typing import Any

from tornado import ioloop, web

from sprockets_http import (
    _lifecycle,
    _systemd,
    config,
    drain,
    eventloop,
    forwarded,
    listen,
    logconfig,
)
from sprockets_http.app import (
    CallbackManager,
    ShutdownCallback,
    StartCallback,
    wrap_application,
)
from sprockets_http.drain import DrainingHTTPServer

EXIT_START_FAILED = 70
"""Exit status of a process whose application could not start (EX_SOFTWARE).

The factory raised, or a ``before_run`` callback failed.
"""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals that start a graceful stop."""

IGNORED_SIGNALS = (signal.SIGHUP,)
"""The signals one process logs and otherwise ignores.

SIGHUP asks a supervisor for new code (see :mod:`sprockets_http.reload`);
left to its default action, it would end a single process at once, without
a drain (``systemctl reload``, a closed terminal).

.. versionadded:: 3.0.0
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

LOGGER = logging.getLogger("sprockets_http.runner")

ServeProcesses = Callable[[Callable[[], "Runner"], list[socket.socket], int], None]
"""How :meth:`Runner.run` serves with several processes:
``serve(make_runner, sockets, processes)``."""

_serve_processes: ServeProcesses | None = None


def use_for_several_processes(serve: ServeProcesses) -> None:
    """Tell :meth:`Runner.run` how to serve with more than one process.

    :mod:`sprockets_http.supervisor` calls this when it is imported (and
    importing :mod:`sprockets_http` imports it), handing over its
    :func:`~sprockets_http.supervisor.serve`.  The supervisor is built on
    this module, so this module cannot import it.

    .. versionadded:: 3.0.0
    """
    global _serve_processes
    _serve_processes = serve


def serve_until_stopped(
    make_runner: Callable[[], Runner],
    sockets: list[socket.socket],
    on_ready: Callable[[Runner], None] | None = None,
) -> None:
    """Serve in this process until stopped, on a new event loop.

    :param make_runner: called once the loop exists and before it runs, so
        that the application factory may use ``IOLoop.current()`` (even
        ``run_sync``) and what it creates belongs to that loop
    :param sockets: the bound listening sockets
    :param on_ready: passed to :meth:`Runner.serve`
    :raises SystemExit: with the status :meth:`Runner.serve` returned
        when it is not 0; with :data:`EXIT_START_FAILED` when
        ``make_runner`` raised

    The loop is the one :mod:`sprockets_http.eventloop` chooses; it is
    closed before this returns, after what is still pending on it was
    cancelled.
    """
    loop = eventloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        try:
            runner = make_runner()
        except Exception:
            logconfig.enable_library_loggers()
            LOGGER.exception("creating the application failed")
            status = EXIT_START_FAILED
        else:
            status = runner.serve(sockets, on_ready)
    finally:
        _close(loop)
    if status:
        raise SystemExit(status)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    try:
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


class Runner:
    """Runs an application in this process until it is told to stop.

    :param app: the application; a plain :class:`tornado.web.Application`
        is wrapped with :func:`~sprockets_http.app.wrap_application`
    :param before_run: callback(s) added to the ``before_run`` phase
    :param on_start: callback(s) added to the ``on_start`` phase
    :param shutdown: callback(s) added to the ``shutdown`` phase

    The application's :meth:`~sprockets_http.app.CallbackManager.stop`
    stops this runner as SIGTERM does.

    .. attribute:: shutdown_limit

       Seconds in-flight requests may take to finish once a stop began,
       seconds each ``shutdown`` callback may take, and seconds the tasks
       still pending afterwards get.  Default 5.

    .. attribute:: shutdown_delay

       Seconds the service keeps accepting and serving after the first stop
       signal, while its health check already fails, so that load balancers
       take it out of rotation before it stops listening.  Default 0.

       .. versionadded:: 3.0.0

    .. attribute:: wait_timeout

       Kept for compatibility with ``sprockets.http``; nothing polls any
       more, so it has no effect.

    .. attribute:: forwarded_allow_ips

       The peers whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are
       believed when the application's ``xheaders`` setting is on (see
       :mod:`sprockets_http.forwarded`).  Default :data:`None`: the
       application's ``forwarded_allow_ips`` setting, else the
       ``FORWARDED_ALLOW_IPS`` environment variable, else loopback.

       .. versionadded:: 3.0.0

    .. attribute:: on_stop

       Called once, when a stop begins, with the signal number, or
       :data:`None` when the application asked to stop.  Default
       :data:`None`.

       .. versionadded:: 3.0.0

    .. attribute:: stop_signals

       The signals that start a graceful stop while :meth:`serve` runs.
       Default :data:`STOP_SIGNALS`; a supervised worker handles SIGTERM
       only (see :mod:`sprockets_http.supervisor`).

       .. versionadded:: 3.0.0

    .. attribute:: ignored_signals

       The signals logged at WARNING and otherwise ignored while
       :meth:`serve` runs.  Default :data:`IGNORED_SIGNALS`; a supervised
       worker ignores SIGHUP without a word, since its supervisor acts on
       it.

       .. versionadded:: 3.0.0
    """

    def __init__(
        self,
        app: web.Application | CallbackManager,
        before_run: StartCallback | Iterable[StartCallback] | None = None,
        on_start: StartCallback | Iterable[StartCallback] | None = None,
        shutdown: ShutdownCallback | Iterable[ShutdownCallback] | None = None,
    ) -> None:
        self.application = wrap_application(app, before_run, on_start, shutdown)
        self.application.stop_handler = self._stop_asked_by_application
        self.logger = LOGGER
        self.server: DrainingHTTPServer | None = None
        self.shutdown_limit = 5.0
        self.shutdown_delay = 0.0
        self.wait_timeout = 1.0
        self.forwarded_allow_ips: forwarded.AllowList | None = None
        self.on_stop: Callable[[int | None], None] | None = None
        self.stop_signals: tuple[int, ...] = STOP_SIGNALS
        self.ignored_signals: tuple[int, ...] = IGNORED_SIGNALS
        # asyncio.Event binds to a loop when first waited for, not here.
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._replacing = False
        self._early_signals: list[int] = []
        self._previous_handlers: dict[int, Any] = {}

    @property
    def stop_budget(self) -> float:
        """The longest a graceful stop may take, in seconds.

        ``shutdown_delay`` + ``shutdown_limit`` for the drain +
        ``shutdown_limit`` per step of the ``drain`` and ``shutdown``
        phases, callbacks and extension hooks alike (each is cancelled when
        it takes longer) + ``shutdown_limit`` for the tasks still pending.
        A synchronous step that blocks cannot be cancelled, so this is a
        promise only for well-behaved ones.

        .. versionadded:: 3.0.0
        """
        steps = len(self.application.phase_steps("drain")) + len(
            self.application.phase_steps("shutdown")
        )
        return self.shutdown_delay + self.shutdown_limit * (2 + steps)

    def run(self, port: int, number_of_procs: int = 0) -> None:
        """Bind ``port`` and serve until stopped; the blocking entry point.

        :param port: the TCP port to listen on
        :param number_of_procs: how many processes to run, see
            :func:`sprockets_http.config.process_count`; with more than
            one, this application is created once here and every worker
            process serves its own copy of it
        :raises SystemExit: with :data:`EXIT_START_FAILED` when a
            ``before_run`` callback failed, with 1 when the port cannot be
            bound, and with the statuses listed in
            :mod:`sprockets_http.supervisor` for several processes

        Kept for ``sprockets.http``; :func:`sprockets_http.run` does this
        and more.
        """
        debug = bool(self.application.settings.get("debug"))
        processes = config.process_count(number_of_procs, debug)
        sockets = self._bind(port)
        if processes == 1:
            serve_until_stopped(lambda: self, sockets)
            return
        assert _serve_processes is not None, "sprockets_http.supervisor not loaded"
        _serve_processes(lambda: self, sockets, processes)

    def serve(
        self,
        sockets: list[socket.socket],
        on_ready: Callable[[Runner], None] | None = None,
    ) -> int:
        """Take the application through its whole life; blocks until it stopped.

        :param sockets: listening sockets, bound beforehand (see
            :func:`sprockets_http.listen.bind`)
        :param on_ready: called with this runner once the ``before_run``
            callbacks are done and the sockets accept connections
        :returns: 0 after a graceful stop, :data:`EXIT_START_FAILED` when a
            ``before_run`` callback failed

        Runs on the current asyncio loop (see :func:`serve_until_stopped`),
        which must not be running: the ``before_run`` callbacks are called
        before it runs.  SIGTERM and SIGINT are handled through the loop
        while this runs, and restored to their previous handling when it
        returns; one that arrives during the ``before_run`` callbacks stops
        the service once they are done, without serving.  SIGHUP is logged
        and ignored (see :attr:`ignored_signals`).  The sockets are closed
        when it returns.

        .. versionadded:: 3.0.0
        """
        io_loop = ioloop.IOLoop.current()
        loop: asyncio.AbstractEventLoop = io_loop.asyncio_loop  # type: ignore[attr-defined]
        self._remember_signals()
        try:
            try:
                self.application.run_before_run_sync(io_loop, self.shutdown_limit)
            except Exception:
                self.logger.critical("before_run failed, not serving")
                return EXIT_START_FAILED
            loop.run_until_complete(self._serve(io_loop, sockets, on_ready))
            return 0
        finally:
            self._release_signals(loop)
            for sock in sockets:
                sock.close()

    def start_server(self, port: int, number_of_procs: int = 0) -> None:
        """Listen on ``port`` and handle stop signals on the current loop.

        :param port: the TCP port to listen on
        :param number_of_procs: accepted for compatibility; this serves in
            one process

        For a caller that runs the loop itself, as with ``sprockets.http``::

            Runner(make_app()).start_server(8000)
            IOLoop.current().start()

        On SIGTERM or SIGINT (or the application's ``stop()``) the server
        drains, the ``shutdown`` callbacks run and then the loop is stopped,
        so ``start()`` returns.  ``before_run`` and ``on_start`` callbacks
        are not run: :meth:`run` and :meth:`serve` do that.
        """
        io_loop = ioloop.IOLoop.current()
        loop: asyncio.AbstractEventLoop = io_loop.asyncio_loop  # type: ignore[attr-defined]
        self._remember_signals()
        self._listen(self._bind(port))
        loop.create_task(self._stop_then_halt(io_loop))

    def stop_server(self) -> None:
        """Stop accepting connections and close idle keep-alive connections.

        In-flight requests carry on; their connections close as they finish.
        Idle connections close once quiet, and WebSockets are told to go
        (1001), as in a drain (see
        :meth:`~sprockets_http.drain.DrainingHTTPServer.begin_drain`).
        """
        if self.server is not None:
            self.server.begin_drain()

    def request_stop(
        self, signo: int = signal.SIGTERM, *, replacing: bool = False
    ) -> None:
        """Start a graceful stop as if ``signo`` had been received.

        :param replacing: this process is replaced by another while the
            service goes on (a rolling restart), rather than the service
            stopping: no load balancer needs to take the service out of
            rotation, so ``shutdown_delay`` is skipped and the health check
            keeps answering ``ok``; in-flight requests still finish; the
            drain's :func:`~sprockets_http.drain.notice` says so, and
            WebSockets are closed with 1012 (Service Restart) instead of
            1001 (Going Away).  The supervisor asks for this.  Asked for
            while a stop is under way, it changes nothing.

        .. versionadded:: 3.0.0
        """
        if replacing and self._stopping.is_set():
            return  # not a second signal: no hurry
        self._on_signal(signo, replacing)

    def _bind(self, port: int) -> list[socket.socket]:
        shared = config.REUSE_PORT.resolve(self.application.settings)
        return listen.open_or_exit([listen.TCPAddress(None, port)], shared=shared)

    # uvloop hears a signal only while its loop runs: one that arrives
    # before, or between two runs (a synchronous before_run callback), waits
    # unseen until another signal comes.  So until the loop runs for good, a
    # plain handler remembers stop signals, and the loop takes them over
    # from the coroutine that lasts as long as the service.  The ignored
    # signals go the same way, so that none ends the process meanwhile.
    def _remember_signals(self) -> None:
        self._early_signals = []
        self._previous_handlers = {
            signo: signal.signal(signo, self._remember_signal)
            for signo in (*self.stop_signals, *self.ignored_signals)
        }

    def _remember_signal(self, signo: int, frame: object) -> None:
        self._early_signals.append(signo)

    def _take_over_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for signo in self.stop_signals:
            loop.add_signal_handler(signo, self._on_signal, signo)
        for signo in self.ignored_signals:
            loop.add_signal_handler(signo, self._on_ignored_signal, signo)
        early, self._early_signals = self._early_signals, []
        for signo in early:
            if signo in self.stop_signals:
                self._on_signal(signo)
            else:
                self._on_ignored_signal(signo)

    def _on_ignored_signal(self, signo: int) -> None:
        self.logger.warning(
            "received %s, ignored (pid %d): one process does not reload; "
            "restart it to run new code, or serve with several workers, "
            "which SIGHUP replaces",
            signal.Signals(signo).name,
            os.getpid(),
        )

    def _release_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for signo, previous in self._previous_handlers.items():
            loop.remove_signal_handler(signo)
            signal.signal(signo, previous)

    async def _serve(
        self,
        io_loop: ioloop.IOLoop,
        sockets: list[socket.socket],
        on_ready: Callable[[Runner], None] | None,
    ) -> None:
        self._take_over_signals(asyncio.get_running_loop())
        if not self._stopping.is_set():  # a stop asked for during before_run
            self._listen(sockets)
            _systemd.notify("READY=1")
            if on_ready is not None:
                on_ready(self)
            self.application.start_on_start(io_loop)
        await self._until_stopped()

    async def _stop_then_halt(self, io_loop: ioloop.IOLoop) -> None:
        loop = asyncio.get_running_loop()
        self._take_over_signals(loop)
        try:
            await self._until_stopped()
        finally:
            self._release_signals(loop)
            io_loop.stop()

    async def _until_stopped(self) -> None:
        await self._stopping.wait()
        await self._serve_while_failing_health()
        drain.notice(self.application.tornado_application).set(
            replacing=self._replacing
        )
        await self.application.run_drain(self.shutdown_limit)
        await _lifecycle.run_steps(
            "drain",
            [_lifecycle.Step("stop accepting and finish requests", self._drain)],
            stop_on_failure=False,
        )
        await self.application.run_shutdown(self.shutdown_limit)
        await _lifecycle.finish_pending_tasks(self.shutdown_limit)
        self.logger.info("stopped (pid %d)", os.getpid())

    def _listen(self, sockets: list[socket.socket]) -> None:
        settings = self.application.settings
        options: dict[str, Any] = {
            key: settings[key] for key in _SERVER_SETTINGS if key in settings
        }
        allowed = self.forwarded_allow_ips
        if allowed is None:
            allowed = config.FORWARDED_ALLOW_IPS.resolve(settings)
        self.server = DrainingHTTPServer(
            self.application.tornado_application,
            xheaders=settings.get("xheaders", True),
            forwarded_allow_ips=allowed,
            **options,
        )
        self.server.add_sockets(sockets)
        where = ", ".join(map(listen.describe, sockets))
        ports = listen.tcp_ports(sockets)
        loop = eventloop.loop_name(ioloop.IOLoop.current().asyncio_loop)  # type: ignore[attr-defined]
        if ports:  # "serving on port N" first: tools wait for that line
            self.logger.info(
                "serving on port %s (pid %d) with %s at %s",
                ", ".join(map(str, ports)),
                os.getpid(),
                loop,
                where,
            )
        else:
            self.logger.info("serving on %s (pid %d) with %s", where, os.getpid(), loop)

    def _stop_asked_by_application(self, shutdown_limit: float | None) -> None:
        if shutdown_limit is not None:
            self.shutdown_limit = shutdown_limit
        self._begin_stop(None, "the application asked to stop")

    def _on_signal(self, signo: int, replacing: bool = False) -> None:
        name = signal.Signals(signo).name
        if not self._stopping.is_set():
            self._replacing = replacing
            self._begin_stop(signo, "replaced" if replacing else f"received {name}")
            return
        self.logger.warning(
            "received %s again, not waiting any longer (pid %d)", name, os.getpid()
        )
        self._hurry.set()
        if self.server is not None:
            self.server.abandon_drain()

    def _begin_stop(self, signo: int | None, why: str) -> None:
        if self._stopping.is_set():
            return
        self.logger.info("%s, stopping (pid %d)", why, os.getpid())
        if not self._replacing:
            _mark_draining(self.application.tornado_application)
            _systemd.notify("STOPPING=1")
        self._stopping.set()
        if self.on_stop is not None:
            self.on_stop(signo)

    async def _serve_while_failing_health(self) -> None:
        if (
            self.server is None
            or self.shutdown_delay <= 0
            or self._hurry.is_set()
            or self._replacing
        ):
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
        self.server.begin_drain(replacing=self._replacing)
        left = await self.server.wait_drained(self.shutdown_limit)
        if left:
            self.logger.warning(
                "closing %d connection(s) still open after %.1f s "
                "(requests in flight, or WebSockets not closed by their client)",
                left,
                self.shutdown_limit,
            )
            await self.server.close_all_connections()
        self.logger.info("drained (pid %d)", os.getpid())


def _mark_draining(tornado_application: web.Application) -> None:
    # HealthHandler reads this attribute; a plain Tornado application, which
    # does not declare it, gets it too.
    application: Any = tornado_application
    application.draining = True
