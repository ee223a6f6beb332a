"""The ``sprockets_app`` pytest fixture, for pytest-tornado users.

pytest loads this plugin by itself once ``sprockets_http`` is installed.  A
test module provides pytest-tornado's ``app`` fixture as usual and asks for
``sprockets_app`` to have the lifecycle callbacks run around the test::

    @pytest.fixture
    def app():
        return make_app()

    @pytest.mark.gen_test
    async def test_hello(sprockets_app, http_client, base_url):
        response = await http_client.fetch(base_url + '/')
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tornado import ioloop, web

from sprockets_http.app import CallbackManager, wrap_application


@pytest.fixture
def sprockets_app(
    app: web.Application, io_loop: ioloop.IOLoop
) -> Iterator[CallbackManager]:
    """The ``app`` fixture with its lifecycle running.

    Runs the ``before_run`` and then the ``on_start`` callbacks to
    completion before the test (a ``before_run`` failure errors the test),
    and every ``shutdown`` callback to completion after it.

    .. versionadded:: 3.0.0
    """
    managed = wrap_application(app)
    io_loop.run_sync(lambda: managed.run_before_run(io_loop))
    io_loop.run_sync(lambda: managed.run_on_start(io_loop))
    yield managed
    io_loop.run_sync(managed.run_shutdown)
