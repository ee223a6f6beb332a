"""Run Tornado web services in production.

:func:`run` is the entry point a service calls from its ``__main__``::

    import sprockets_http

    def make_app(**settings):
        return sprockets_http.app.Application([...], **settings)

    if __name__ == '__main__':
        sprockets_http.run(make_app)
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import logging
import logging.config
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn

from tornado import web

from sprockets_http import (
    app,
    config,
    context,
    devreload,
    eventloop,
    listen,
    logconfig,
    pidfile,
    reload,
    runner,
    supervisor,
)
from sprockets_http.app import CallbackManager
from sprockets_http.context import current_request_id

__version__ = "3.0.0"

version_info: tuple[int, ...] = tuple(int(part) for part in __version__.split("."))
"""The version as a tuple of integers, e.g. ``(3, 0, 0)``."""

__all__ = [
    "__version__",
    "app",
    "config",
    "current_request_id",
    "logconfig",
    "run",
    "runner",
    "supervisor",
    "version_info",
]

LOGGER = logging.getLogger("sprockets_http")


def run(
    create_application: Callable[..., web.Application | CallbackManager],
    settings: Mapping[str, Any] | None = None,
    log_config: Mapping[str, Any] | None = None,
) -> None:
    """Create the application and serve it until SIGTERM or SIGINT.

    :param create_application: the application factory; it may return an
        :class:`~sprockets_http.app.Application` or a plain
        :class:`tornado.web.Application`.  It is called as
        ``create_application(**settings)`` with the settings given here,
        except the runner's own (:data:`sprockets_http.config.RUN_OPTIONS`),
        plus ``debug`` when it takes that argument (or ``**kwargs``), as
        ``sprockets.http`` called it; it runs in each
        serving process, once the asyncio loop exists and before it runs,
        so it may use ``IOLoop.current()``
    :param settings: the settings below, and any for the factory
    :param log_config: a :func:`logging.config.dictConfig` configuration;
        :data:`None` installs :func:`sprockets_http.logconfig.default_config`
        in the ``log_format`` setting's format
    :raises ValueError: for a malformed runner setting in ``settings``
    :raises SystemExit: 70 when the factory or a ``before_run`` callback
        failed, 1 (:data:`~sprockets_http.listen.EXIT_CANNOT_LISTEN`) when
        an address cannot be listened on, 2 when a setting from the
        environment is malformed, the PID file names a running process or
        the loop asked for is not installed,
        and the statuses listed in :mod:`sprockets_http.supervisor` with
        several processes

    The runner's settings, each also read from the environment variable of
    the same name in capitals (see :mod:`sprockets_http.config`):

    ``port``
        TCP port, on every interface (IPv4 and IPv6); default 8000.
    ``bind``
        Where to listen instead: addresses (``HOST:PORT``,
        ``[IPV6]:PORT``, ``unix:PATH``, ``fd://N``, see
        :func:`sprockets_http.listen.parse_address`), as a list or
        comma-separated.  Sockets handed over by systemd's socket
        activation (``LISTEN_FDS``) are used instead of both.  Every
        process serves every socket.
    ``unix_socket_mode``
        Permissions of the unix socket files ``bind`` creates; default
        ``0o660`` (octal text such as ``"660"`` in the environment).
    ``forwarded_allow_ips``
        The proxies whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are
        believed when ``xheaders`` is on: IP addresses and networks, as a
        list or comma-separated, or ``*``; default loopback (see
        :mod:`sprockets_http.forwarded`).  May also be set in the
        application's settings.
    ``pid_file``
        A file to write the main process's pid to once the sockets are
        bound, removed at exit; starting is refused while it names a
        running process (see :mod:`sprockets_http.pidfile`).
    ``number_of_procs``
        Processes to run; 0 (the default) means one per CPU this process
        may use (its CPU affinity, and a container's cgroup CPU quota
        rounded up), 1 one process without a supervisor, more a
        supervising parent and that many workers (see
        :mod:`sprockets_http.supervisor`).
    ``shutdown_delay``
        Seconds the service keeps serving after SIGTERM while its
        :class:`~sprockets_http.health.HealthHandler` fails, before it
        drains; default 0.  See
        :attr:`sprockets_http.runner.Runner.shutdown_delay`.
    ``shutdown_limit``
        Seconds in-flight requests get to finish once the drain began,
        seconds each ``shutdown`` step may take, and seconds work still
        pending afterwards gets; default 5.  See
        :attr:`sprockets_http.runner.Runner.shutdown_limit`.
    ``reuse_port``
        Share the port with other processes that ask for it too; default
        off, so that a second service started on the same port by mistake
        fails (see :mod:`sprockets_http.listen`).
    ``log_format``
        ``json`` or ``text`` (see :mod:`sprockets_http.logconfig`); by
        default ``text`` when standard error is a terminal, else ``json``.
        Ignored when ``log_config`` is given.
    ``loop``
        ``auto`` (the default), ``asyncio`` or ``uvloop`` (see
        :mod:`sprockets_http.eventloop`).
    ``worker_timeout``
        Seconds a serving process's event loop may be blocked before its
        threads' stacks are logged and it is replaced (a worker) or exits
        with status 75 (one process); default 30, 0 never, and never in
        debug mode (see :mod:`sprockets_http.heartbeat`).
    ``max_requests``, ``max_requests_jitter``
        Replace a worker after it has served this many requests, plus a
        random 0 to ``max_requests_jitter``; default 0, never (see
        :mod:`sprockets_http.recycle`).

    With several processes, SIGHUP checks the code on disk and re-executes
    the service, which then replaces its workers one at a time (see
    :mod:`sprockets_http.reload`).  With
    :data:`~sprockets_http.reload.CHECK_VARIABLE` set in the environment,
    this only imports and builds the application, then exits 0 (or 70 when
    the factory fails), without binding or writing the PID file.

    Every log record carries the id of the request being handled (see
    :mod:`sprockets_http.context`).  When ``prometheus_client`` is installed,
    the directory of the metrics of all the processes is kept for the
    service's lifetime (see :mod:`sprockets_http.metrics`).

    ``shutdown_delay``, ``shutdown_limit`` and ``forwarded_allow_ips`` may
    also be set in the settings of the application the factory returns.
    Settings passed on to the factory:

    ``debug``
        Tornado's debug mode, which also runs one process and reloads it
        when a source file changes (see :mod:`sprockets_http.devreload`);
        else the ``DEBUG`` environment variable (``1``, ``true``...).
    ``xheaders``
        Read by the runner from the application's settings: believe
        ``X-Forwarded-For`` and friends from the peers
        ``forwarded_allow_ips`` allows; default :data:`True`.
    ``max_body_size``, ``max_buffer_size``...
        Read from the application's settings and passed to
        :class:`tornado.httpserver.HTTPServer`.
    ``sentry_sdk_init``
        Read from the application's settings: keyword arguments for
        :func:`sentry_sdk.init`, see :func:`init_sentry`.
    """
    given = dict(settings or {})
    try:
        options = {option.name: option.resolve(given) for option in config.RUN_OPTIONS}
        debug = config.DEBUG.resolve(given)
    except config.EnvironmentValueError as error:
        _usage_error(error)
    check = reload.check_requested()
    pid_file = None
    if options["pid_file"] and not check:
        pid_file = pidfile.PidFile(options["pid_file"])
    if pid_file is not None:
        try:
            pid_file.check()
        except pidfile.PidFileError as error:
            _usage_error(error)
    factory_settings = {
        key: value for key, value in given.items() if key not in options
    }
    if _accepts(create_application, "debug"):
        factory_settings["debug"] = debug

    try:
        eventloop.use(options["loop"])
    except ValueError as error:
        _usage_error(error)

    logging.config.dictConfig(
        dict(log_config)
        if log_config is not None
        else logconfig.default_config(debug, options["log_format"])
    )
    logconfig.enable_library_loggers()
    context.install_record_factory()
    per_application = [o for o in config.RUN_OPTIONS if o.per_application]

    def build() -> runner.Runner:
        application = create_application(**factory_settings)
        logconfig.enable_library_loggers()
        service = runner.Runner(application)
        for option in per_application:
            value = option.resolve(given, service.application.settings)
            setattr(service, option.name, value)
        return service

    if check:
        reload.check(build)

    def make_runner() -> runner.Runner:
        # Called in each serving process: Sentry may start threads, which
        # must not exist in a parent that forks.
        service = build()
        init_sentry(service.application.settings)
        return service

    processes = config.process_count(options["number_of_procs"], debug)
    sockets = listen.open_or_exit(
        options["bind"] or [listen.TCPAddress(None, options["port"])],
        shared=options["reuse_port"],
        unix_mode=options["unix_socket_mode"],
    )
    worker_options = supervisor.WorkerOptions(
        # A debugger stopped at a breakpoint blocks the loop too.
        worker_timeout=0.0 if debug else options["worker_timeout"],
        max_requests=options["max_requests"],
        max_requests_jitter=options["max_requests_jitter"],
        reexec=True,
    )
    reloader = devreload.Reloader() if debug else None
    try:
        if pid_file is not None:
            try:
                pid_file.write()
            except pidfile.PidFileError as error:
                _usage_error(error)
        if reloader is not None:
            make_runner = reloader.watching(make_runner)
        with _metrics_directory():
            supervisor.serve(make_runner, sockets, processes, worker_options)
    finally:
        listen.release(sockets)
        if pid_file is not None:
            pid_file.remove()
    if reloader is not None:
        reloader.restart_if_changed()


@contextlib.contextmanager
def _metrics_directory() -> Iterator[None]:
    """Keep the metrics of every process, when ``prometheus_client`` is there."""
    if importlib.util.find_spec("prometheus_client") is None:
        yield
        return
    metrics = importlib.import_module("sprockets_http.metrics")
    supervisor.observe_workers(metrics.observe_worker)
    with metrics.service_directory():
        yield


def _usage_error(error: Exception) -> NoReturn:
    sys.stderr.write(f"sprockets_http: {error}\n")
    raise SystemExit(config.USAGE_ERROR) from None


def _accepts(func: Callable[..., Any], name: str) -> bool:
    """Whether ``func`` takes a keyword argument ``name``."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # no signature to read: assume it does
        return True
    return any(
        parameter.kind is parameter.VAR_KEYWORD
        or (
            parameter.name == name
            and parameter.kind
            in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        )
        for parameter in parameters
    )


def init_sentry(settings: Mapping[str, Any]) -> bool:
    """Initialise Sentry, when ``sentry_sdk`` is installed and has a DSN.

    :param settings: the application's settings
    :returns: whether Sentry was initialised

    :func:`run` calls this in each serving process, after the application
    factory.  As ``sprockets.http`` did, the options are Tornado's
    integration and a logging integration that sends events for CRITICAL
    records only, ``release`` from the ``version`` setting and
    ``environment`` from the ``environment`` setting (else the
    ``ENVIRONMENT`` environment variable), and then the ``sentry_sdk_init``
    setting, which wins.

    Unlike ``sprockets.http``, nothing happens without a DSN (the ``dsn``
    of ``sentry_sdk_init``, or the ``SENTRY_DSN`` environment variable): Sentry
    would report nothing, yet its per-request instrumentation would still
    cost about a third of the service's throughput.

    .. versionadded:: 3.0.0
    """
    overrides: Mapping[str, Any] = settings.get("sentry_sdk_init") or {}
    if not overrides.get("dsn") and not os.environ.get("SENTRY_DSN"):
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.logging import LoggingIntegration
        from sentry_sdk.integrations.tornado import TornadoIntegration
    except ImportError:
        return False
    options: dict[str, Any] = {
        "integrations": [
            LoggingIntegration(event_level=logging.CRITICAL),
            TornadoIntegration(),
        ]
    }
    if settings.get("version"):
        options["release"] = str(settings["version"])
    environment = settings.get("environment") or os.environ.get("ENVIRONMENT")
    if environment:
        options["environment"] = environment
    options.update(overrides)
    sentry_sdk.init(**options)
    return True
