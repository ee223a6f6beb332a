"""Request handlers that tell orchestrators and load balancers how we are.

Mount them on paths of your choosing::

    from sprockets_http import app, health

    def make_app(**settings):
        return app.Application([("/health", health.HealthHandler)], **settings)

and point the readiness probe of Kubernetes, or the health check of a load
balancer, at that path (see :doc:`deployment`).
"""

from __future__ import annotations

from tornado import web


class HealthHandler(web.RequestHandler):
    """Readiness: is this process taking new requests?

    ``GET`` (and ``HEAD``) answer ``200 {"status": "ok"}`` while the process
    serves, and ``503 {"status": "draining"}`` from the moment it received
    SIGTERM or SIGINT, including the whole ``shutdown_delay`` during which it
    still serves every other request.  Responses are never cached.

    It reads the application's ``draining`` attribute, which the runner
    sets (see :attr:`sprockets_http.app.Application.draining`); an
    application that no runner serves is always ``ok``.

    .. versionadded:: 3.0.0
    """

    access_log_failures_only = True  # probes every few seconds are noise

    def get(self) -> None:
        """Answer with the status document."""
        self.set_header("Cache-Control", "no-store")
        if getattr(self.application, "draining", False):
            self.set_status(503)
            self.finish({"status": "draining"})
        else:
            self.finish({"status": "ok"})

    def head(self) -> None:
        """Answer like ``GET``, without the body."""
        self.get()
