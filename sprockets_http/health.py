"""Request handlers that tell operators and orchestrators how a service is.

Mount them on paths of the application's choosing, for example::

    app.Application([("/status", health.StatusHandler), ...])

.. versionadded:: 3.0.0
"""

from __future__ import annotations

from tornado import web

from sprockets_http.app import CallbackManager


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
