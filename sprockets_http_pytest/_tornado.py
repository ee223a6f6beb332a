"""pytest-tornado's fixtures and ``gen_test`` marker, for when it is absent.

:mod:`sprockets_http_pytest` registers this module only when
pytest-tornado is not loaded, so a test written for pytest-tornado runs the
same with or without it.  Everything here is built on Tornado's asyncio
integration: each test gets a new asyncio loop, nothing is made "current"
through Tornado's deprecated calls, and the server and client are created
inside the running loop.

Tornado, and asyncio too, are imported inside the fixtures and hooks, never
at module level: this module is imported in every pytest run of an
environment that has ``sprockets_http`` installed, and pytest itself
imports neither.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import pytest

if TYPE_CHECKING:
    import socket

    from tornado import httpclient, httpserver, ioloop, web

GEN_TEST_MARKER = (
    "gen_test(timeout=None): run the async test on the io_loop fixture's"
    " loop; it fails after timeout seconds (default: the ASYNC_TEST_TIMEOUT"
    " environment variable, else 5)"
)


def _timeout(marker: pytest.Mark | None = None) -> float:
    from tornado import testing

    timeout = marker.kwargs.get("timeout") if marker is not None else None
    return float(timeout) if timeout is not None else testing.get_async_test_timeout()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Give every ``gen_test`` test the ``io_loop`` fixture it runs on."""
    if item.get_closest_marker("gen_test") is None:
        return
    # pytest sets a test's fixtures up from this list after this hook.
    names: list[str] | None = getattr(item, "fixturenames", None)
    if names is not None and "io_loop" not in names:
        names.append("io_loop")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test marked ``gen_test`` to completion on its loop.

    Other tests, marked or not, are left to pytest and other plugins.
    """
    marker = pyfuncitem.get_closest_marker("gen_test")
    test = pyfuncitem.obj
    if marker is None or not inspect.iscoroutinefunction(test):
        return None
    funcargs = pyfuncitem.funcargs
    arguments = {
        name: funcargs[name]
        for name in inspect.signature(test).parameters
        if name in funcargs
    }
    loop = cast("ioloop.IOLoop", funcargs["io_loop"])
    loop.run_sync(functools.partial(test, **arguments), timeout=_timeout(marker))
    return True


@pytest.fixture
def io_loop() -> Iterator[ioloop.IOLoop]:
    """A Tornado loop on a new asyncio loop, closed after the test.

    The asyncio loop is also set as the thread's current one for the test,
    as :class:`tornado.testing.AsyncTestCase` does, so that code which runs
    before the loop does (another fixture, say) finds it.
    """
    import asyncio

    from tornado.platform.asyncio import AsyncIOLoop

    loop = AsyncIOLoop(make_current=False)
    asyncio.set_event_loop(loop.asyncio_loop)
    yield loop
    loop.run_sync(_cancel_leftover_tasks, timeout=_timeout())
    asyncio.set_event_loop(None)
    loop.close(all_fds=True)


async def _cancel_leftover_tasks() -> None:
    # A task the test started and never awaited would otherwise be
    # destroyed pending when the loop closes, with a warning far from its
    # cause.
    import asyncio

    current = asyncio.current_task()
    leftovers = [task for task in asyncio.all_tasks() if task is not current]
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


@pytest.fixture
def _sprockets_http_socket() -> Iterator[tuple[socket.socket, int]]:
    from tornado import testing

    listener, port = testing.bind_unused_port()
    with listener:
        yield listener, port


@pytest.fixture
def http_port(_sprockets_http_socket: tuple[socket.socket, int]) -> int:
    """The loopback port ``http_server`` listens on."""
    return _sprockets_http_socket[1]


@pytest.fixture
def base_url(http_port: int) -> str:
    """``http://127.0.0.1:PORT``, where ``http_server`` listens."""
    return f"http://127.0.0.1:{http_port}"


@pytest.fixture
def http_server(
    app: web.Application,
    io_loop: ioloop.IOLoop,
    _sprockets_http_socket: tuple[socket.socket, int],
) -> Iterator[httpserver.HTTPServer]:
    """An HTTP server for the ``app`` fixture, on ``http_port``.

    Stopped after the test, its open connections closed.
    """
    from tornado import httpserver

    async def start() -> httpserver.HTTPServer:
        server = httpserver.HTTPServer(app)
        server.add_socket(_sprockets_http_socket[0])
        return server

    server = io_loop.run_sync(start)
    yield server
    server.stop()
    io_loop.run_sync(server.close_all_connections, timeout=_timeout())


@pytest.fixture
def http_client(
    io_loop: ioloop.IOLoop, http_server: httpserver.HTTPServer
) -> Iterator[httpclient.AsyncHTTPClient]:
    """An HTTP client of the test's own, closed after it; starts ``http_server``."""
    from tornado import httpclient

    async def create() -> httpclient.AsyncHTTPClient:
        # A separate instance: the application may use, and close, the
        # loop's shared client in its own callbacks.
        return httpclient.AsyncHTTPClient(force_instance=True)

    client = io_loop.run_sync(create)
    yield client
    client.close()
