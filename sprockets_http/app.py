"""The lifecycle-aware Tornado application.

:class:`Application` is a :class:`tornado.web.Application` that carries the
service's lifecycle callbacks in :attr:`~CallbackManager.runner_callbacks`:

``before_run``
    ``callback(app, io_loop)``, run in order once the loop exists and before
    any request is served.  A failure stops the start-up: it is logged, the
    ``shutdown`` callbacks run, and the exception propagates.
``on_start``
    ``callback(app, io_loop)``, run once the service is serving.  A failure
    is logged and the others still run.
``shutdown``
    ``callback(app)``, run when the service stops, after in-flight requests
    have finished.  A failure is logged and the others still run.

Any callback may be a plain function, return an awaitable, or be a coroutine
function; awaitables are awaited before the next callback starts.

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

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import tornado
from tornado import httputil, ioloop, web

from sprockets_http import _lifecycle, _logtext
from sprockets_http.extensions import (
    ExtensionRegistry,
    ExtensionStatus,
    load_installed,
)

Callback = Callable[..., Any]
"""A lifecycle callback: sync, returning an awaitable, or a coroutine function."""

PHASES = ("before_run", "on_start", "shutdown")
"""The keys of :attr:`CallbackManager.runner_callbacks`, in the order they run."""

_ACCESS_LOG = logging.getLogger("tornado.access")
# What tornado.web.RequestHandler.clear() puts in every response.
_DEFAULT_SERVER = f"TornadoServer/{tornado.version}"


class CallbackManager:
    """The lifecycle half of an application.

    :param tornado_application: the application handed to callbacks
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

    def __init__(self, tornado_application: web.Application) -> None:
        self._tornado_application = tornado_application
        self.runner_callbacks: dict[str, list[Callback]] = {
            phase: [] for phase in PHASES
        }
        self._extensions = ExtensionRegistry()
        configured = tornado_application.settings.get("extensions") or ()
        for extension, version in load_installed(configured):
            self._extensions.add(extension, version)

    @property
    def tornado_application(self) -> web.Application:
        """The :class:`tornado.web.Application` that serves requests."""
        return self._tornado_application

    @property
    def before_run_callbacks(self) -> list[Callback]:
        """The ``before_run`` callbacks, in the order they run."""
        return self.runner_callbacks["before_run"]

    @property
    def on_start_callbacks(self) -> list[Callback]:
        """The ``on_start`` callbacks, in the order they run."""
        return self.runner_callbacks["on_start"]

    @property
    def on_shutdown_callbacks(self) -> list[Callback]:
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
        ``on_start``, and after them in ``shutdown``.

        .. versionadded:: 3.0.0
        """
        args: tuple[Any, ...] = (self.tornado_application,)
        if phase != "shutdown":
            args += (io_loop,)
        callbacks = [
            _lifecycle.Step(
                f"{phase} callback {_lifecycle.describe(callback)}",
                functools.partial(callback, *args),
            )
            for callback in self.runner_callbacks[phase]
        ]
        hooks = self._extensions.steps(phase, args)
        if phase == "shutdown":
            return callbacks + hooks
        return hooks + callbacks

    async def run_before_run(
        self, io_loop: ioloop.IOLoop, shutdown_limit: float = 5.0
    ) -> None:
        """Run the ``before_run`` callbacks.

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

    async def run_on_start(self, io_loop: ioloop.IOLoop) -> None:
        """Run the ``on_start`` callbacks; failures are logged.

        .. versionadded:: 3.0.0
        """
        await _lifecycle.run_steps(
            "on_start", self.phase_steps("on_start", io_loop), stop_on_failure=False
        )

    async def run_shutdown(self, shutdown_limit: float = 5.0) -> None:
        """Run the ``shutdown`` callbacks; failures are logged.

        :param shutdown_limit: seconds each awaitable callback may take; one
            that takes longer is cancelled, logged, and the next one runs

        .. versionadded:: 3.0.0
        """
        await _lifecycle.run_steps(
            "shutdown",
            self.phase_steps("shutdown"),
            stop_on_failure=False,
            timeout=shutdown_limit,
        )

    def start(self, io_loop: ioloop.IOLoop) -> None:
        """Run the ``before_run`` callbacks now and schedule ``on_start``.

        :param io_loop: a loop that is not running yet; ``before_run``
            callbacks run to completion on it before this returns
        :raises Exception: what a failing ``before_run`` callback raised,
            after the ``shutdown`` callbacks have run

        In a running loop, await :meth:`run_before_run` and
        :meth:`run_on_start` instead.
        """
        io_loop.run_sync(functools.partial(self.run_before_run, io_loop))
        io_loop.add_callback(self.run_on_start, io_loop)

    def stop(
        self,
        io_loop: ioloop.IOLoop,
        shutdown_limit: float = 5.0,
        wait_timeout: float = 1.0,
    ) -> None:
        """Schedule the ``shutdown`` callbacks, then stop ``io_loop``.

        :param io_loop: the loop to stop once the callbacks have finished
        :param shutdown_limit: seconds each awaitable callback may take
        :param wait_timeout: accepted for compatibility with
            ``sprockets.http``; nothing polls any more, so it has no effect

        Returns at once; the work happens when ``io_loop`` runs.
        """
        io_loop.add_callback(self._stop_then_halt, io_loop, shutdown_limit)

    async def _stop_then_halt(
        self, io_loop: ioloop.IOLoop, shutdown_limit: float
    ) -> None:
        try:
            await self.run_shutdown(shutdown_limit)
        finally:
            io_loop.stop()


class Application(CallbackManager, web.Application):
    """A :class:`tornado.web.Application` with lifecycle callbacks.

    Takes the same arguments as :class:`tornado.web.Application`.  Besides
    the callbacks it adds:

    * an access log line per request (:meth:`log_request`);
    * the ``Server`` response header: the ``server_header`` setting when
      present (:data:`None` removes the header), else ``service/version``
      or ``service`` from the settings, else no header at all.
    """

    draining: bool = False
    """:data:`True` from the moment the runner received its first stop signal.

    The runner sets it (on a plain :class:`tornado.web.Application` too) and
    :class:`~sprockets_http.health.HealthHandler` reads it.

    .. versionadded:: 3.0.0
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        web.Application.__init__(self, *args, **kwargs)
        CallbackManager.__init__(self, self)
        self.add_transform(_server_header_transform(self.settings))

    def log_request(self, handler: web.RequestHandler) -> None:
        """Write the access log line for a finished request.

        The line reads::

            REMOTE - USER [dd/Mon/YYYY:HH:MM:SS +0000] "METHOD URI VERSION"
            STATUS "REASON" BYTES "REFERER" "USER-AGENT" (secs:0.123)

        at INFO below 400, WARNING for 4xx and ERROR for 5xx, on the
        ``tornado.access`` logger.  A handler with
        ``access_log_failures_only = True`` logs its successes at DEBUG.
        Values taken from the request have control characters escaped, so a
        client cannot forge a log line.  Nothing is formatted for a record
        the logger would drop.
        """
        if "log_function" in self.settings:
            self.settings["log_function"](handler)
            return
        status = handler.get_status()
        if status >= 500:
            level = logging.ERROR
        elif status >= 400:
            level = logging.WARNING
        elif getattr(handler, "access_log_failures_only", False):
            level = logging.DEBUG
        else:
            level = logging.INFO
        if not _ACCESS_LOG.isEnabledFor(level):
            return
        request = handler.request
        elapsed = request.request_time()
        user = getattr(handler, "_current_user", None)  # never call get_current_user
        _ACCESS_LOG.log(
            level,
            '%s - %s [%s] "%s %s %s" %d "%s" %s "%s" "%s" (secs:%.3f)',
            request.remote_ip,
            "-" if user is None else _logtext.escape(str(user)),
            time.strftime(
                "%d/%b/%Y:%H:%M:%S +0000", time.gmtime(time.time() - elapsed)
            ),
            _logtext.escape(request.method or "-"),
            _logtext.escape(request.uri or "-"),
            request.version,
            status,
            _logtext.escape(handler._reason),
            handler._headers.get("Content-Length", "-"),
            _logtext.escape(request.headers.get("Referer", "-")),
            _logtext.escape(request.headers.get("User-Agent", "-")),
            elapsed,
        )


def _server_header_transform(
    settings: dict[str, Any],
) -> type[web.OutputTransform]:
    """An output transform that puts this application's ``Server`` header.

    Only Tornado's own default header is replaced, so a handler that sets
    ``Server`` itself keeps its value.
    """
    if "server_header" in settings:
        value: str | None = settings["server_header"]
    elif settings.get("service") and settings.get("version"):
        value = f"{settings['service']}/{settings['version']}"
    else:
        value = settings.get("service") or None

    class ServerHeader(web.OutputTransform):
        def __init__(self, request: httputil.HTTPServerRequest) -> None:
            pass  # nothing per request: this runs for every response

        def transform_first_chunk(
            self,
            status_code: int,
            headers: httputil.HTTPHeaders,
            chunk: bytes,
            finishing: bool,
        ) -> tuple[int, httputil.HTTPHeaders, bytes]:
            if headers.get("Server") == _DEFAULT_SERVER:
                if value is None:
                    del headers["Server"]
                else:
                    headers["Server"] = value
            return status_code, headers, chunk

    return ServerHeader


class _ApplicationAdapter(CallbackManager):
    """Lifecycle callbacks for a plain :class:`tornado.web.Application`."""

    def __init__(self, tornado_application: web.Application) -> None:
        super().__init__(tornado_application)
        self.settings = tornado_application.settings

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.tornado_application!r}>"


def wrap_application(
    application: web.Application | CallbackManager,
    before_run: Callback | Iterable[Callback] | None = None,
    on_start: Callback | Iterable[Callback] | None = None,
    shutdown: Callback | Iterable[Callback] | None = None,
) -> CallbackManager:
    """Give ``application`` the lifecycle interface and add callbacks to it.

    :param application: an :class:`Application` (returned as it is, with
        the callbacks appended) or a plain Tornado application (wrapped)
    :param before_run: a callback or an iterable of callbacks to append
    :param on_start: a callback or an iterable of callbacks to append
    :param shutdown: a callback or an iterable of callbacks to append
    :returns: an object with :class:`CallbackManager`'s interface
    """
    if isinstance(application, CallbackManager):
        manager = application
    else:
        manager = _ApplicationAdapter(application)
    for phase, callbacks in zip(PHASES, (before_run, on_start, shutdown), strict=True):
        if callbacks is None:
            continue
        if callable(callbacks):
            callbacks = [callbacks]
        manager.runner_callbacks[phase].extend(callbacks)
    return manager
