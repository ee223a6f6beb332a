"""Request handlers that tell orchestrators and operators how a service is.

Mount them on paths of your choosing::

    from sprockets_http import app, health

    def make_app(**settings):
        return app.Application(
            [("/health", health.HealthHandler), ("/status", health.StatusHandler)],
            **settings,
        )

and point the readiness probe of Kubernetes, or the health check of a load
balancer, at the health path (see :doc:`deployment`).

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import logging

from tornado import web

from sprockets_http.app import CallbackManager


class HealthHandler(web.RequestHandler):
    """Readiness: is this process taking new requests?

    ``GET`` (and ``HEAD``) answer ``200 {"status": "ok"}`` while the process
    serves, and ``503 {"status": "draining"}`` from the moment it received
    SIGTERM or SIGINT, including the whole ``shutdown_delay`` during which it
    still serves every other request.  Responses are never cached.

    It reads the application's ``draining`` attribute, which the runner
    sets (see :attr:`sprockets_http.app.Application.draining`); an
    application that no runner serves is always ``ok``.

    Probes every few seconds are noise in the access log: ``ok`` is logged
    at DEBUG, and the expected 503 of a drain at INFO (see
    :mod:`sprockets_http.accesslog`).

    .. versionadded:: 3.0.0
    """

    access_log_level: int | None = None

    def get(self) -> None:
        """Answer with the status document."""
        self.set_header("Cache-Control", "no-store")
        if getattr(self.application, "draining", False):
            self.access_log_level = logging.INFO
            self.set_status(503)
            self.finish({"status": "draining"})
        else:
            self.access_log_level = logging.DEBUG
            self.finish({"status": "ok"})

    def head(self) -> None:
        """Answer like ``GET``, without the body."""
        self.get()


class StatusHandler(web.RequestHandler):
    """Report the application's extensions as JSON.

    ``GET`` answers 200 with one member per registered extension, in
    registration order::

        {"extensions": {"db": {"version": "1.4.0", "state": "running"}}}

    ``state`` is one of those of
    :data:`~sprockets_http.extensions.ExtensionState`; ``version`` is
    ``null`` when the extension has none.  The answer is never cached.

    The handler must be mounted in a :class:`sprockets_http.app.Application`;
    in any other application it answers 500 and logs why.

    .. versionadded:: 3.0.0
    """

    def get(self) -> None:
        application = self.application
        if not isinstance(application, CallbackManager):
            raise web.HTTPError(
                500,
                "StatusHandler is mounted in %r, which is not a "
                "sprockets_http.app.Application",
                application,
            )
        self.set_header("Cache-Control", "no-store")
        self.write(
            {
                "extensions": {
                    name: status.as_dict()
                    for name, status in application.extensions.items()
                }
            }
        )
