"""Testing applications with their lifecycle callbacks running.

:class:`SprocketsHttpTestCase` is a :class:`tornado.testing.AsyncHTTPTestCase`
that starts the application before each test, as the runner does, and stops
it after, so a test talks to the application as it is in production: pools
open, clients connected.

pytest users get the same from the ``sprockets_app`` fixture, which pytest
finds by itself once ``sprockets_http`` is installed (see
:mod:`sprockets_http_pytest`).
"""

from __future__ import annotations

from typing import Any

from tornado import testing, web

from sprockets_http.app import CallbackManager, wrap_application


class SprocketsHttpTestCase(testing.AsyncHTTPTestCase):
    """Run the application's lifecycle around each test.

    Implement :meth:`~tornado.testing.AsyncHTTPTestCase.get_app` as usual;
    it may return a :class:`~sprockets_http.app.Application` or a plain
    Tornado application, and may set :attr:`app` itself, as
    ``sprockets.http`` asked.

    ``setUp`` calls the application's
    :meth:`~sprockets_http.app.CallbackManager.start`: the ``before_run``
    callbacks run to completion (a failure fails the test) and the
    ``on_start`` callbacks start once the loop runs.  ``tearDown`` calls its
    :meth:`~sprockets_http.app.CallbackManager.stop` and runs the loop until
    the ``shutdown`` callbacks are done.  An application class that
    overrides ``start`` or ``stop`` has its own methods called.

    .. attribute:: app

       The application with its lifecycle interface
       (:class:`~sprockets_http.app.CallbackManager`).

    .. attribute:: shutdown_limit

       Seconds each awaitable ``shutdown`` callback may take, and then the
       work still pending on the loop. Default 5.
    """

    app: Any
    shutdown_limit: float = 5.0
    wait_timeout: float = 0.05  # kept for sprockets.http compatibility; unused

    def setUp(self) -> None:
        self.app = None
        super().setUp()
        application = self._app if self.app is None else self.app
        if isinstance(application, web.Application):
            # A plain Tornado application gets the lifecycle interface; an
            # Application (or anything with start and stop) is used as is.
            application = wrap_application(application)
        self.app = application
        self.app.start(self.io_loop)

    def tearDown(self) -> None:
        manager: CallbackManager = self.app
        manager.stop(self.io_loop, self.shutdown_limit, self.wait_timeout)
        self.io_loop.start()
        super().tearDown()

    def get_app(self) -> web.Application:  # pragma: no cover - abstract
        raise NotImplementedError("return the application under test")
