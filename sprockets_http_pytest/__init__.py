"""The pytest plugin of ``sprockets_http``: the ``sprockets_app`` fixture.

pytest loads this plugin by itself once ``sprockets_http`` is installed.  A
test module provides an ``app`` fixture and asks for ``sprockets_app`` to
have the lifecycle callbacks run around the test::

    @pytest.fixture
    def app():
        return make_app()

    @pytest.mark.gen_test
    async def test_hello(sprockets_app, http_client, base_url):
        response = await http_client.fetch(base_url + '/')

The ``io_loop``, ``http_server``, ``http_client``, ``http_port`` and
``base_url`` fixtures and the ``gen_test`` marker are pytest-tornado's when
it is installed; otherwise this plugin provides them (see *Testing a
service* in the documentation).

Loading this plugin costs a pytest run that does not use it next to
nothing: it imports neither Tornado nor ``sprockets_http`` until a fixture
or a ``gen_test`` test needs them.  That is why it is a package of its own,
beside ``sprockets_http`` rather than in it: importing a module of
``sprockets_http`` imports the package, and the package imports Tornado.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tornado import ioloop, web

    from sprockets_http.app import CallbackManager

PYTEST_TORNADO = ("tornado", "pytest_tornado.plugin")
"""The names pytest-tornado's plugin is registered under: its entry point's,
or its module's when it is named with ``-p`` or ``pytest_plugins``."""


def pytest_configure(config: pytest.Config) -> None:
    """Provide pytest-tornado's fixtures and marker unless it is loaded.

    Every plugin named by an entry point, ``-p`` or a root ``conftest.py``
    is registered before this hook runs, so the check sees pytest-tornado
    however it was loaded; ``-p no:tornado`` turns it off and ours on.
    """
    manager = config.pluginmanager
    if any(manager.hasplugin(name) for name in PYTEST_TORNADO):
        return
    from sprockets_http_pytest import _tornado

    manager.register(_tornado, "sprockets_http.tornado")
    config.addinivalue_line("markers", _tornado.GEN_TEST_MARKER)


@pytest.fixture
def sprockets_app(
    app: web.Application, io_loop: ioloop.IOLoop
) -> Iterator[CallbackManager]:
    """The ``app`` fixture, started as the runner starts it.

    Before the test, the application's ``start`` runs the ``before_run``
    callbacks to completion, before the loop runs (a failure errors the
    test), and the ``on_start`` callbacks start once the test runs the
    loop; after it, every ``shutdown`` callback runs to completion.

    .. versionadded:: 3.0.0
    """
    from sprockets_http.app import wrap_application

    managed = wrap_application(app)
    managed.start(io_loop)
    yield managed
    io_loop.run_sync(managed.run_shutdown)
