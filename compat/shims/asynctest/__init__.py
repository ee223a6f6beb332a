"""A stand-in for the parts of ``asynctest`` that the published suites use.

``asynctest`` 0.13 does not import on Python 3.11 and later.  The test suites
of sprockets-statsd 1.0.0 and sprockets-postgres 1.8.1 use three things from
it, provided here on top of the standard library:

``TestCase``
    A :class:`unittest.TestCase` whose every test runs in a new event loop
    (``self.loop``, also the current loop), and whose ``setUp``,
    ``tearDown`` and test methods may be coroutine functions, run to
    completion on that loop.  As with ``asynctest`` (and unlike
    :class:`unittest.IsolatedAsyncioTestCase`), nothing calls
    ``asyncSetUp``/``asyncTearDown`` by itself: a suite that defines them
    calls them from its own ``setUp``/``tearDown``.
``mock``
    :mod:`unittest.mock`, whose ``patch`` already gives an ``AsyncMock`` for
    a coroutine function.
``CoroutineMock``
    :class:`unittest.mock.AsyncMock`.

The harness puts this directory on ``PYTHONPATH`` only; it is never
installed.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import unittest
from collections.abc import Callable
from typing import Any
from unittest import mock

CoroutineMock = mock.AsyncMock

__all__ = ["CoroutineMock", "TestCase", "mock"]


class TestCase(unittest.TestCase):
    """Runs each test, its ``setUp`` and its ``tearDown`` in a new event loop."""

    loop: asyncio.AbstractEventLoop

    def __init__(self, methodName: str = "runTest") -> None:
        super().__init__(methodName)
        # unittest looks these up on the instance, so a wrapper set here is
        # what it calls; it runs a returned coroutine on this test's loop.
        for name in ("setUp", "tearDown", methodName):
            method = getattr(self, name, None)
            if method is not None:
                setattr(self, name, self._run_awaitable(method))

    def _run_awaitable(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if inspect.isawaitable(result):
                return self.loop.run_until_complete(result)
            return result

        return call

    def run(self, result: Any = None) -> Any:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            return super().run(result)
        finally:
            _close(self.loop)
            asyncio.set_event_loop(None)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what the test left running, then close ``loop``."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
