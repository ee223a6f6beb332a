"""Testing applications with their lifecycle callbacks running.

:class:`SprocketsHttpTestCase` is a :class:`tornado.testing.AsyncHTTPTestCase`
that runs the application's ``before_run`` and ``on_start`` callbacks before
each test and its ``shutdown`` callbacks after it, so a test talks to the
application as it is in production: pools open, clients connected.

pytest users get the same from the ``sprockets_app`` fixture, which pytest
finds by itself once ``sprockets_http`` is installed (see
:mod:`sprockets_http.pytest_plugin`).
"""

from __future__ import annotations

from tornado import testing, web

from sprockets_http.app import CallbackManager, wrap_application


class SprocketsHttpTestCase(testing.AsyncHTTPTestCase):
    """Run the application's lifecycle around each test.

    Implement :meth:`~tornado.testing.AsyncHTTPTestCase.get_app` as usual;
    it may return a :class:`~sprockets_http.app.Application` or a plain
    Tornado application.  The started application is :attr:`app`.

    ``setUp`` runs the ``before_run`` callbacks and then the ``on_start``
    callbacks to completion (a ``before_run`` failure fails the test);
    ``tearDown`` runs every ``shutdown`` callback to completion before the
    loop is closed.

    .. attribute:: app

       The application with its lifecycle interface
       (:class:`~sprockets_http.app.CallbackManager`).

    .. attribute:: shutdown_limit

       Seconds each awaitable ``shutdown`` callback may take. Default 5.
    """

    app: CallbackManager
    shutdown_limit: float = 5.0
    wait_timeout: float = 1.0  # kept for sprockets.http compatibility; unused

    def setUp(self) -> None:
        super().setUp()
        self.app = wrap_application(self._app)
        self.io_loop.run_sync(
            lambda: self.app.run_before_run(self.io_loop, self.shutdown_limit)
        )
        self.io_loop.run_sync(lambda: self.app.run_on_start(self.io_loop))

    def tearDown(self) -> None:
        self.io_loop.run_sync(lambda: self.app.run_shutdown(self.shutdown_limit))
        super().tearDown()

    def get_app(self) -> web.Application:  # pragma: no cover - abstract
        raise NotImplementedError("return the application under test")
