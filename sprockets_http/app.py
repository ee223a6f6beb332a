"""The lifecycle-aware Tornado application.

:class:`Application` is a :class:`tornado.web.Application` that carries the
service's lifecycle callbacks in :attr:`~CallbackManager.runner_callbacks`:

``before_run``
    ``callback(app, io_loop)``, run in order before any request is served,
    while the loop is not running yet (so a callback may call
    ``io_loop.run_sync()``); an awaitable a callback returns is run to
    completion before the next one is called.  A failure stops the
    start-up: it is logged, the ``shutdown`` callbacks run, and the
    exception propagates.
``on_start``
    ``callback(app, io_loop)``, run once the service is serving.  Each
    starts on its own, in order, and none waits for another, so a callback
    that runs as long as the service (a queue consumer) does not hold up
    the next.  A failure is logged and the others still run.
``drain``
    ``callback(app)``, run in order when this process begins to drain
    (after ``shutdown_delay``), before its WebSockets are told to go and
    while in-flight requests still run: the moment to send clients a last
    message.  A failure is logged and the others still run.
``shutdown``
    ``callback(app)``, run in order when the service stops, after in-flight
    requests have finished.  A failure is logged and the others still run.

Any callback may be a plain function, return an awaitable, or be a coroutine
function.  After the ``shutdown`` callbacks, work still pending on the loop
gets ``shutdown_limit`` seconds to finish.

Extensions (:mod:`sprockets_http.extensions`), added with
:meth:`~CallbackManager.add_extension` or named in the ``extensions``
setting, hook into the same phases: their ``before_run`` and ``on_start``
hooks run before the callbacks of the phase, and their ``shutdown`` hooks
after the ``shutdown`` callbacks, so callbacks can use what extensions
provide from start to end.

:func:`wrap_application` gives a plain :class:`tornado.web.Application` the
same interface, which is what :func:`sprockets_http.run` does with whatever
the application factory returns.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypedDict, TypeVar

import tornado
from tornado import httputil, ioloop, web

from sprockets_http import _lifecycle, accesslog, config, context, drain
from sprockets_http.extensions import (
    HOOKS,
    ExtensionRegistry,
    ExtensionStatus,
    load_installed,
)

StartCallback = Callable[[Any, ioloop.IOLoop], Awaitable[object] | None]
"""A ``before_run`` or ``on_start`` callback: ``callback(app, io_loop)``.

``app`` is the Tornado application; the callback returns :data:`None` or an
awaitable (a coroutine function qualifies).

.. versionadded:: 3.0.0
"""

ShutdownCallback = Callable[[Any], Awaitable[object] | None]
"""A ``shutdown`` callback: ``callback(app)``, returning :data:`None` or an
awaitable.

.. versionadded:: 3.0.0
"""

Callback = StartCallback | ShutdownCallback
"""Any lifecycle callback."""


class RunnerCallbacks(TypedDict):
    """The type of :attr:`CallbackManager.runner_callbacks`.

    .. versionadded:: 3.0.0
    """

    before_run: list[StartCallback]
    on_start: list[StartCallback]
    drain: list[ShutdownCallback]
    shutdown: list[ShutdownCallback]


_C = TypeVar("_C", StartCallback, ShutdownCallback)

PHASES = ("before_run", "on_start", "drain", "shutdown")
"""The keys of :attr:`CallbackManager.runner_callbacks`, in the order they run.

.. versionchanged:: 3.0.0
   ``drain``.
"""

StopHandler = Callable[[float | None], None]
"""What :meth:`CallbackManager.stop` hands a stop to: called with the
``shutdown_limit`` the caller gave, or :data:`None`."""

# What tornado.web.RequestHandler.clear() puts in every response.
_DEFAULT_SERVER = [f"TornadoServer/{tornado.version}"]  # as get_list() gives it


class CallbackManager:
    """The lifecycle half of an application.

    :param tornado_application: the application handed to callbacks
    :param runner_callbacks: the callbacks, as a dictionary of lists keyed by
        phase; it is used as it is (missing phases are added), so callbacks
        appended to its lists later still run
    :raises sprockets_http.extensions.ExtensionError: when the ``extensions``
        setting names an extension no installed package publishes, or one
        that cannot be added

    Mixed into :class:`Application` and used by :func:`wrap_application` to
    adapt a plain Tornado application.  The extensions named in the
    ``extensions`` setting are loaded and added here, before any added with
    :meth:`add_extension`.
    """

    settings: dict[str, Any]
    """The Tornado application's settings."""

    stop_handler: StopHandler | None = None
    """Set by the :class:`~sprockets_http.runner.Runner` serving this
    application: :meth:`stop` hands the stop to it, so that the process
    stops as on SIGTERM.

    .. versionadded:: 3.0.0
    """

    def __init__(
        self,
        tornado_application: web.Application,
        runner_callbacks: Mapping[str, list[Any]] | None = None,
    ) -> None:
        self._tornado_application = tornado_application
        callbacks: Any = {} if runner_callbacks is None else runner_callbacks
        for phase in PHASES:
            callbacks.setdefault(phase, [])
        self.runner_callbacks: RunnerCallbacks = callbacks
        self._extensions = ExtensionRegistry()
        configured = tornado_application.settings.get("extensions") or ()
        for extension, version in load_installed(configured):
            self._extensions.add(extension, version)

    @property
    def tornado_application(self) -> web.Application:
        """The :class:`tornado.web.Application` that serves requests."""
        return self._tornado_application

    @property
    def before_run_callbacks(self) -> list[StartCallback]:
        """The ``before_run`` callbacks, in the order they run."""
        return self.runner_callbacks["before_run"]

    @property
    def on_start_callbacks(self) -> list[StartCallback]:
        """The ``on_start`` callbacks, in the order they start."""
        return self.runner_callbacks["on_start"]

    @property
    def on_drain_callbacks(self) -> list[ShutdownCallback]:
        """The ``drain`` callbacks, in the order they run.

        .. versionadded:: 3.0.0
        """
        return self.runner_callbacks["drain"]

    @property
    def on_shutdown_callbacks(self) -> list[ShutdownCallback]:
        """The ``shutdown`` callbacks, in the order they run."""
        return self.runner_callbacks["shutdown"]

    @property
    def extensions(self) -> Mapping[str, ExtensionStatus]:
        """The registered extensions: name to status, in registration order.

        A read-only view that follows every change of state.

        .. versionadded:: 3.0.0
        """
        return self._extensions.statuses

    def add_extension(self, extension: object) -> None:
        """Register a lifecycle extension.

        :param extension: an object with a non-empty ``name`` and any of
            the attributes and hooks described in
            :mod:`sprockets_http.extensions`
        :raises sprockets_http.extensions.ExtensionError: at once when the
            name is missing, empty or already registered, when a declaration
            is malformed, or when the application has started

        The order of the extensions is settled when the application starts:
        a need that no extension provides, or a cycle, fails the start-up.

        .. versionadded:: 3.0.0
        """
        self._extensions.add(extension)

    def phase_steps(
        self, phase: str, io_loop: ioloop.IOLoop | None = None
    ) -> list[_lifecycle.Step]:
        """The steps that make up ``phase``, ready to run.

        :param phase: one of :data:`PHASES`
        :param io_loop: passed to ``before_run`` and ``on_start`` callbacks

        Extension hooks come before the callbacks in ``before_run`` and
        ``on_start``, and after them in ``shutdown``; ``drain`` has
        callbacks only.

        .. versionadded:: 3.0.0
        """
        args: tuple[Any, ...] = (self.tornado_application,)
        if phase in ("before_run", "on_start"):
            args += (io_loop,)
        callbacks: list[Callable[..., Any]] = self.runner_callbacks[phase]  # type: ignore[literal-required]
        steps = [
            _lifecycle.Step(
                f"{phase} callback {_lifecycle.describe(callback)}",
                functools.partial(callback, *args),
            )
            for callback in callbacks
        ]
        if phase not in HOOKS:  # extensions have no drain hook
            return steps
        hooks = self._extensions.steps(phase, args)
        if phase == "shutdown":
            return steps + hooks
        return hooks + steps

    def start(self, io_loop: ioloop.IOLoop, shutdown_limit: float = 5.0) -> None:
        """Run the ``before_run`` callbacks now and schedule ``on_start``.

        :param io_loop: a loop that is not running yet; ``before_run``
            callbacks run to completion on it before this returns, and the
            ``on_start`` callbacks start once it runs
        :param shutdown_limit: passed to :meth:`run_shutdown` when a
            ``before_run`` callback fails
        :raises Exception: what a failing ``before_run`` callback raised,
            after the ``shutdown`` callbacks have run

        In a running loop, await :meth:`run_before_run` and
        :meth:`run_on_start` instead.
        """
        self.run_before_run_sync(io_loop, shutdown_limit)
        io_loop.add_callback(self.start_on_start, io_loop)

    def run_before_run_sync(
        self, io_loop: ioloop.IOLoop, shutdown_limit: float = 5.0
    ) -> None:
        """Run the ``before_run`` callbacks on ``io_loop``, which is not running.

        Each callback is called outside the loop; an awaitable it returns is
        run to completion on the loop before the next is called.

        :raises Exception: what the first failing callback raised, after it
            was logged and the ``shutdown`` callbacks have run

        .. versionadded:: 3.0.0
        """
        loop = io_loop.asyncio_loop  # type: ignore[attr-defined]
        failure = _lifecycle.run_steps_before_loop(
            loop,
            "before_run",
            self.phase_steps("before_run", io_loop),
            stop_on_failure=True,
        )
        if failure is not None:
            loop.run_until_complete(self.run_shutdown(shutdown_limit))
            raise failure

    async def run_before_run(
        self, io_loop: ioloop.IOLoop, shutdown_limit: float = 5.0
    ) -> None:
        """Run the ``before_run`` callbacks inside the running loop.

        For a service started inside a loop that already runs; otherwise
        use :meth:`start`, which calls them before the loop runs.

        :param shutdown_limit: passed to :meth:`run_shutdown` when a
            callback fails
        :raises Exception: whatever the first failing callback raised, after
            it was logged and the ``shutdown`` callbacks have run

        .. versionadded:: 3.0.0
        """
        failure = await _lifecycle.run_steps(
            "before_run", self.phase_steps("before_run", io_loop), stop_on_failure=True
        )
        if failure is not None:
            await self.run_shutdown(shutdown_limit)
            raise failure

    def start_on_start(
        self, io_loop: ioloop.IOLoop
    ) -> list[asyncio.Task[BaseException | None]]:
        """Start the ``on_start`` callbacks, each as a task of its own.

        Call it in the running loop.  The tasks start in order and none
        waits for another; each logs its own failure.

        :returns: the tasks, for a caller that wants to wait for them

        .. versionadded:: 3.0.0
        """
        return _lifecycle.start_steps("on_start", self.phase_steps("on_start", io_loop))

    async def run_on_start(self, io_loop: ioloop.IOLoop) -> None:
        """Start the ``on_start`` callbacks and wait until all have finished.

        Failures are logged.

        .. versionadded:: 3.0.0
        """
        tasks = self.start_on_start(io_loop)
        if tasks:
            await asyncio.wait(tasks)

    async def run_drain(self, shutdown_limit: float = 5.0) -> None:
        """Run the ``drain`` callbacks; failures are logged.

        :param shutdown_limit: seconds each awaitable callback may take; one
            that takes longer is cancelled, logged, and the next one runs

        .. versionadded:: 3.0.0
        """
        await self._run_to_the_end("drain", shutdown_limit)

    async def run_shutdown(self, shutdown_limit: float = 5.0) -> None:
        """Run the ``shutdown`` callbacks; failures are logged.

        :param shutdown_limit: seconds each awaitable callback may take; one
            that takes longer is cancelled, logged, and the next one runs

        .. versionadded:: 3.0.0
        """
        await self._run_to_the_end("shutdown", shutdown_limit)

    async def _run_to_the_end(self, phase: str, shutdown_limit: float) -> None:
        await _lifecycle.run_steps(
            phase,
            self.phase_steps(phase),
            stop_on_failure=False,
            timeout=shutdown_limit,
        )

    def stop(
        self,
        io_loop: ioloop.IOLoop,
        shutdown_limit: float | None = None,
        wait_timeout: float | None = None,
    ) -> None:
        """Stop the application: the whole process when a runner serves it.

        :param io_loop: the loop the application runs on
        :param shutdown_limit: seconds each awaitable ``shutdown`` callback,
            and then the work still pending on the loop, may take; default
            5, or the runner's own setting
        :param wait_timeout: when no runner serves the application, seconds
            between two checks for pending tasks; default 1

        When a :class:`~sprockets_http.runner.Runner` serves the application,
        the process stops as it does on SIGTERM: it drains, runs the
        ``shutdown`` callbacks once and exits with status 0.  This may be
        called from any callback, handler or task, and before the service
        is ready.

        Otherwise, as with ``sprockets.http`` (in tests, or with a loop the
        caller runs): the drain :func:`~sprockets_http.drain.notice` is set,
        the ``drain`` callbacks run, then the ``shutdown`` callbacks; then, every
        ``wait_timeout`` seconds for at most ``shutdown_limit`` seconds, the
        loop is checked for other pending tasks; then ``io_loop`` is stopped.
        Nothing is cancelled, since the loop is not the application's.

        Returns at once; the work happens when ``io_loop`` runs.
        """
        if self.stop_handler is not None:
            self.stop_handler(shutdown_limit)
            return
        io_loop.add_callback(
            self._stop_then_halt,
            io_loop,
            5.0 if shutdown_limit is None else shutdown_limit,
            1.0 if wait_timeout is None else wait_timeout,
        )

    async def _stop_then_halt(
        self, io_loop: ioloop.IOLoop, shutdown_limit: float, wait_timeout: float
    ) -> None:
        # Not in a finally clause: when this is cancelled, whoever cancelled
        # it is running the loop and must not see it stop.
        drain.notice(self.tornado_application).set()
        await self.run_drain(shutdown_limit)
        await self.run_shutdown(shutdown_limit)
        await _lifecycle.wait_for_other_tasks(shutdown_limit, wait_timeout)
        io_loop.stop()


class Application(CallbackManager, web.Application):
    """A :class:`tornado.web.Application` with lifecycle callbacks.

    Takes the same arguments as :class:`tornado.web.Application`, plus
    ``runner_callbacks``, a dictionary of callback lists keyed by phase (as
    :attr:`~CallbackManager.runner_callbacks`).  Besides the callbacks it
    adds:

    * a request id per request, echoed in the ``X-Request-Id`` response
      header and seen by everything logged while the request is handled
      (see :mod:`sprockets_http.context`);
    * an access log record per request, with fields (:meth:`log_request`);
    * request metrics when a :class:`sprockets_http.metrics.MetricsHandler`
      is mounted (see :mod:`sprockets_http.metrics`);
    * the ``Server`` response header from the ``server_header`` setting,
      read for every response, so the application may change it while it
      runs; :data:`None` leaves no ``Server`` header.  When not given, the
      setting is made ``service/version`` or ``service`` from the settings,
      else :data:`None`.  A handler that sets ``Server`` itself keeps its
      value.

    :raises ValueError: when a :class:`~sprockets_http.metrics.MetricsHandler`
        is mounted more than once, naming the paths, or cannot be (see
        :mod:`sprockets_http.metrics`)
    """

    draining: bool = False
    """:data:`True` from the moment the runner received its first stop signal.

    The runner sets it (on a plain :class:`tornado.web.Application` too) and
    :class:`~sprockets_http.health.HealthHandler` reads it.

    .. versionadded:: 3.0.0
    """

    def __init__(
        self,
        *args: Any,
        runner_callbacks: Mapping[str, list[Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        self._recorder: Any = None
        web.Application.__init__(self, *args, **kwargs)
        CallbackManager.__init__(self, self, runner_callbacks)
        if "server_header" not in self.settings:
            service = self.settings.get("service")
            version = self.settings.get("version")
            self.settings["server_header"] = (
                f"{service}/{version}" if service and version else service or None
            )
        self._log_query = config.ACCESS_LOG_QUERY.resolve({}, self.settings)
        self.add_transform(_response_transform(self))
        self._watch_metrics()

    def add_handlers(self, host_pattern: str, host_handlers: Any) -> None:
        """Add handlers, as :meth:`tornado.web.Application.add_handlers`.

        :raises ValueError: as the constructor, for a second
            :class:`~sprockets_http.metrics.MetricsHandler`
        """
        super().add_handlers(host_pattern, host_handlers)
        self._watch_metrics()

    def _watch_metrics(self) -> None:
        # The handler's module is loaded when it is mounted; otherwise the
        # application needs no metrics and does not import them.
        metrics = sys.modules.get("sprockets_http.metrics")
        if metrics is not None:
            self._recorder = metrics.recorder_for(self)

    def start_on_start(
        self, io_loop: ioloop.IOLoop
    ) -> list[asyncio.Task[BaseException | None]]:
        """Start the ``on_start`` callbacks, as :meth:`CallbackManager.start_on_start`.

        With metrics, this process's loop lag and resources start being
        measured first.
        """
        if self._recorder is not None:
            self._recorder.serving()
        return super().start_on_start(io_loop)

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        """Find the handler for ``request``, and give the request its id.

        The handler runs where :func:`sprockets_http.current_request_id` is
        the request's id (see :func:`sprockets_http.context.begin`).

        .. versionadded:: 3.0.0
        """
        context.begin(request)
        return super().find_handler(request, **kwargs)

    def log_request(self, handler: web.RequestHandler) -> None:
        """Record a finished request: metrics, then the access log record.

        The record is described in :mod:`sprockets_http.accesslog`.  The
        ``log_function`` setting, when given, is called instead of writing
        it (metrics are still recorded).
        """
        status = handler.get_status()
        elapsed = handler.request.request_time()
        if self._recorder is not None:
            self._recorder.finished(handler, status, elapsed)
        if "log_function" in self.settings:
            self.settings["log_function"](handler)
            return
        level = accesslog.level_for(handler, status)
        if accesslog.LOGGER.isEnabledFor(level):
            accesslog.log_request(handler, status, level, self._log_query, elapsed)


def _response_transform(application: Application) -> type[web.OutputTransform]:
    """An output transform for every response of ``application``.

    It puts the ``server_header`` setting in responses (only replacing
    Tornado's own default header, so a handler that sets ``Server`` itself
    keeps its value), echoes the request id, counts the body bytes sent,
    and counts the request in flight for the metrics.  Tornado makes one
    per request, right before the handler runs.
    """
    settings = application.settings

    class ResponseTransform(web.OutputTransform):
        def __init__(self, request: httputil.HTTPServerRequest) -> None:
            self._request = request
            if application._recorder is not None:
                application._recorder.started()

        def transform_first_chunk(
            self,
            status_code: int,
            headers: httputil.HTTPHeaders,
            chunk: bytes,
            finishing: bool,
        ) -> tuple[int, httputil.HTTPHeaders, bytes]:
            # get_list(): get() is Python, and raises and catches a KeyError
            # when a handler removed the header.
            if headers.get_list("Server") == _DEFAULT_SERVER:
                value = settings.get("server_header")
                if value is None:
                    del headers["Server"]
                else:
                    headers["Server"] = value
            context.echo(self._request, headers)
            accesslog.count_body_bytes(self._request, len(chunk), first=True)
            return status_code, headers, chunk

        def transform_chunk(self, chunk: bytes, finishing: bool) -> bytes:
            accesslog.count_body_bytes(self._request, len(chunk))
            return chunk

    return ResponseTransform


class _ApplicationAdapter(CallbackManager):
    """Lifecycle callbacks for a plain :class:`tornado.web.Application`.

    Callbacks the application carries in a ``runner_callbacks`` attribute
    are used; an application without one is given the adapter's, as
    ``sprockets.http`` did, so a factory may keep appending to it.
    """

    def __init__(self, tornado_application: web.Application) -> None:
        super().__init__(
            tornado_application, getattr(tornado_application, "runner_callbacks", None)
        )
        application: Any = tornado_application
        application.runner_callbacks = self.runner_callbacks
        self.settings = tornado_application.settings

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.tornado_application!r}>"


def wrap_application(
    application: web.Application | CallbackManager,
    before_run: StartCallback | Iterable[StartCallback] | None = None,
    on_start: StartCallback | Iterable[StartCallback] | None = None,
    shutdown: ShutdownCallback | Iterable[ShutdownCallback] | None = None,
) -> CallbackManager:
    """Give ``application`` the lifecycle interface and add callbacks to it.

    :param application: an :class:`Application` (returned as it is, with
        the callbacks appended) or a plain Tornado application (wrapped; its
        ``runner_callbacks`` attribute, a dictionary of callback lists, is
        honoured and created when missing)
    :param before_run: a callback or an iterable of callbacks to append
    :param on_start: a callback or an iterable of callbacks to append
    :param shutdown: a callback or an iterable of callbacks to append
    :returns: an object with :class:`CallbackManager`'s interface
    """
    if isinstance(application, CallbackManager):
        manager = application
    else:
        manager = _ApplicationAdapter(application)
    manager.before_run_callbacks.extend(_listed(before_run))
    manager.on_start_callbacks.extend(_listed(on_start))
    manager.on_shutdown_callbacks.extend(_listed(shutdown))
    return manager


def _listed(callbacks: _C | Iterable[_C] | None) -> list[_C]:
    if callbacks is None:
        return []
    if callable(callbacks):
        return [callbacks]
    return list(callbacks)
