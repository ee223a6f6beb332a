"""Run Tornado web services in production.

:func:`run` is the entry point a service calls from its ``__main__``::

    import sprockets_http

    def make_app(**settings):
        return sprockets_http.app.Application([...], **settings)

    if __name__ == '__main__':
        sprockets_http.run(make_app)
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

# Nothing heavy at import time: pytest imports this package in every run of
# an environment it is installed in, for its plugin (sprockets_http.pytest_plugin).
if TYPE_CHECKING:
    from tornado import web

    from sprockets_http import app, logconfig, runner, supervisor
    from sprockets_http.app import CallbackManager

__version__ = "3.0.0"

__all__ = ["__version__", "app", "logconfig", "run", "runner", "supervisor"]

LOGGER = logging.getLogger("sprockets_http")

RUNNER_SETTINGS = (
    "port",
    "number_of_procs",
    "shutdown_delay",
    "shutdown_limit",
    "sentry_sdk_init",
)
"""Settings that configure the runner and are not passed to the factory."""


def run(
    create_application: Callable[..., web.Application | CallbackManager],
    settings: Mapping[str, Any] | None = None,
    log_config: Mapping[str, Any] | None = None,
) -> None:
    """Create the application and serve it until SIGTERM or SIGINT.

    :param create_application: the application factory, called as
        ``create_application(**settings)`` inside the running loop; it may
        return an :class:`~sprockets_http.app.Application` or a plain
        :class:`tornado.web.Application`
    :param settings: the settings below; all but the runner's own
        (:data:`RUNNER_SETTINGS`) are passed to the factory
    :param log_config: a :func:`logging.config.dictConfig` configuration;
        :data:`None` installs :func:`sprockets_http.logconfig.default_config`
    :raises SystemExit: 70 when the factory or a ``before_run`` callback
        failed, 1 when the port cannot be bound, 2 when a setting from the
        environment is malformed, and the statuses listed in
        :mod:`sprockets_http.supervisor` with several processes

    Settings:

    ``port``
        TCP port; else the ``PORT`` environment variable; else 8000.
    ``number_of_procs``
        Processes to run; 0 (the default) means one per CPU, 1 one process
        without a supervisor, more a supervising parent and that many
        workers (see :mod:`sprockets_http.supervisor`).
    ``shutdown_delay``
        Seconds the service keeps serving after SIGTERM while its
        :class:`~sprockets_http.health.HealthHandler` fails, before it
        drains; else the ``SHUTDOWN_DELAY`` environment variable; else 0.
        See :attr:`sprockets_http.runner.Runner.shutdown_delay`.
    ``shutdown_limit``
        Seconds in-flight requests get to finish once the drain began, and
        seconds each ``shutdown`` step may take; else the ``SHUTDOWN_LIMIT``
        environment variable; else 5.  See
        :attr:`sprockets_http.runner.Runner.shutdown_limit`.
    ``debug``
        Tornado's debug mode, which also runs one process; else true when
        the ``DEBUG`` environment variable is set and not ``0``.
    ``xheaders``
        Trust ``X-Forwarded-For`` and friends; default :data:`True`.
    ``max_body_size``, ``max_buffer_size``
        Passed to :class:`tornado.httpserver.HTTPServer`.
    ``sentry_sdk_init``
        Keyword arguments for :func:`sentry_sdk.init` that override the
        defaults.  Sentry is initialised only when ``sentry_sdk`` is
        installed and a DSN is configured, here or in the ``SENTRY_DSN``
        environment variable: without one it would report nothing, yet
        its per-request instrumentation would still cost about a third of
        the service's throughput.
    """
    import logging.config

    from sprockets_http import logconfig, runner, supervisor

    app_settings = dict(settings or {})
    runner_settings = {
        key: app_settings.pop(key) for key in RUNNER_SETTINGS if key in app_settings
    }
    port = (
        runner_settings["port"]
        if runner_settings.get("port") is not None
        else _port_from_environment()
    )
    shutdown_delay = _seconds(
        "shutdown_delay", runner_settings.get("shutdown_delay"), 0
    )
    shutdown_limit = _seconds(
        "shutdown_limit", runner_settings.get("shutdown_limit"), 5
    )
    debug = app_settings.setdefault("debug", _flag(os.environ.get("DEBUG")))
    app_settings.setdefault("xheaders", True)

    logging.config.dictConfig(
        dict(log_config) if log_config is not None else logconfig.default_config(debug)
    )
    processes = supervisor.process_count(
        runner_settings.get("number_of_procs", 0), debug
    )
    try:
        sockets = runner.bind(port)
    except OSError as error:
        LOGGER.critical("cannot listen on port %s: %s", port, error.strerror)
        raise SystemExit(1) from None

    def make_runner() -> runner.Runner:
        # Called in each serving process: Sentry may start threads, which
        # must not exist in a parent that forks.
        _init_sentry(app_settings, runner_settings.get("sentry_sdk_init"))
        service = runner.Runner(create_application(**app_settings))
        service.shutdown_delay = shutdown_delay
        service.shutdown_limit = shutdown_limit
        return service

    supervisor.serve(make_runner, sockets, processes)


def _port_from_environment() -> int:
    value = os.environ.get("PORT", "8000")
    try:
        return int(value)
    except ValueError:
        sys.stderr.write(f"sprockets_http: PORT must be a number, not {value!r}\n")
        raise SystemExit(2) from None


def _seconds(name: str, setting: float | None, default: float) -> float:
    """A duration setting, else its environment variable, else ``default``.

    :raises ValueError: for a setting that is negative or not a number
    :raises SystemExit: 2, for such an environment variable
    """
    if setting is not None:
        if not setting >= 0:  # also refuses NaN
            raise ValueError(f"{name} must be 0 or more, not {setting!r}")
        return float(setting)
    variable = name.upper()
    value = os.environ.get(variable, str(default))
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:
        sys.stderr.write(
            f"sprockets_http: {variable} must be a number of seconds, not {value!r}\n"
        )
        raise SystemExit(2)
    return seconds


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in (
        "",
        "0",
        "false",
        "no",
        "off",
    )


def _init_sentry(
    settings: Mapping[str, Any], overrides: Mapping[str, Any] | None
) -> None:
    """Initialise Sentry when ``sentry_sdk`` is installed and has a DSN.

    ``release`` comes from the ``version`` setting and ``environment`` from
    the ``environment`` setting or the ``ENVIRONMENT`` environment variable;
    ``overrides`` win over both.
    """
    if not (overrides or {}).get("dsn") and not os.environ.get("SENTRY_DSN"):
        return
    try:
        import sentry_sdk
        from sentry_sdk.integrations.tornado import TornadoIntegration
    except ImportError:
        return
    options: dict[str, Any] = {"integrations": [TornadoIntegration()]}
    if settings.get("version"):
        options["release"] = str(settings["version"])
    environment = settings.get("environment") or os.environ.get("ENVIRONMENT")
    if environment:
        options["environment"] = environment
    options.update(overrides or {})
    sentry_sdk.init(**options)


_SUBMODULES = frozenset({"app", "logconfig", "runner", "supervisor"})


def __getattr__(name: str) -> Any:
    # ``import sprockets_http`` then ``sprockets_http.app.Application``
    # keeps working although the submodules are imported on first use.
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
