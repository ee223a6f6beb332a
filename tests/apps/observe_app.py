"""A service for the observability tests: logs, request ids and metrics.

``GET /`` logs one application record (with ``extra=`` fields, one of them
not JSON-serialisable) and answers ``{"pid": N, "request_id": ...}`` after
an ``await``; ``/fail`` raises, so ErrorLogger logs a 500 with its
traceback; ``/problem`` answers a problem details document; ``/health`` and
``/metrics`` are the library's handlers (``/metrics`` only when
``prometheus_client`` is installed); ``/loop`` names the running loop's
module.  Serve it with ``python -m sprockets_http tests.apps.observe_app:make_app``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from tornado import web

import sprockets_http
from sprockets_http import app, health, metrics, mixins

LOGGER = logging.getLogger("observe_app")

# The application's own metric, created at import as many are: added up
# over the workers like the built-in ones.
HELLOS: Any = None
if metrics.available():
    import prometheus_client

    HELLOS = prometheus_client.Counter("observe_hellos", "Hellos said.")


class Unserialisable:
    def __repr__(self) -> str:
        return "<Unserialisable>"


class Hello(mixins.ErrorLogger, mixins.ErrorWriter, web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(0)
        LOGGER.info(
            "hello from the handler",
            extra={"order": 7, "tags": ["a", "b"], "thing": Unserialisable()},
        )
        if HELLOS is not None:
            HELLOS.inc()
        self.write(
            {"pid": os.getpid(), "request_id": sprockets_http.current_request_id()}
        )


class Fail(mixins.ErrorLogger, mixins.ErrorWriter, web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(0)
        LOGGER.info("about to fail")
        raise RuntimeError("handler exploded")


class Loop(web.RequestHandler):
    def get(self) -> None:
        self.write({"loop": type(asyncio.get_running_loop()).__module__})


class Problem(mixins.ErrorLogger, mixins.ProblemDetailsWriter, web.RequestHandler):
    def get(self) -> None:
        raise web.HTTPError(409)


def make_app(**settings: Any) -> app.Application:
    handlers: list[Any] = [
        ("/", Hello),
        ("/fail", Fail),
        ("/problem", Problem),
        ("/health", health.HealthHandler),
        ("/loop", Loop),
    ]
    if metrics.available():
        handlers.append(("/metrics", metrics.MetricsHandler))
    return app.Application(handlers, **settings)
