"""A small service that shows what sprockets_http gives a Tornado service.

Start it with ``python -m examples.hello`` (or ``make run``); it listens on
``PORT`` (default 8000) with one worker per CPU.

``GET /``
    a greeting, counted per process
``GET /fail``
    an unexpected exception: logged with its traceback, answered with an
    error document that does not reveal it
``GET /teapot``
    a deliberate client-facing detail
``GET /health``
    200 while serving, 503 once the process is draining
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from tornado import ioloop, web

from sprockets_http import app, health, mixins

LOGGER = logging.getLogger("examples.hello")


class HelloHandler(mixins.ErrorLogger, mixins.ErrorWriter, web.RequestHandler):
    def get(self) -> None:
        counter = self.application.settings["greetings"]
        counter["count"] += 1
        self.write(
            {"hello": "world", "greetings": counter["count"], "pid": os.getpid()}
        )


class FailHandler(mixins.ErrorLogger, mixins.ErrorWriter, web.RequestHandler):
    def get(self) -> None:
        raise RuntimeError("the database password is hunter2")


class TeapotHandler(mixins.ErrorLogger, mixins.ErrorWriter, web.RequestHandler):
    def get(self) -> None:
        raise mixins.DetailedHTTPError(418, "only tea is brewed here", pot="stout")


async def open_counter(application: web.Application, io_loop: ioloop.IOLoop) -> None:
    # Where a real service opens its pools; awaited before the first request.
    await asyncio.sleep(0)
    application.settings["greetings"] = {"count": 0}
    LOGGER.info("counter ready")


def announce(application: web.Application, io_loop: ioloop.IOLoop) -> None:
    LOGGER.info("hello is serving")


async def close_counter(application: web.Application) -> None:
    # Runs once in-flight requests have finished.
    await asyncio.sleep(0)
    LOGGER.info("said hello %d time(s)", application.settings["greetings"]["count"])


def make_app(**settings: Any) -> app.Application:
    """The application factory :func:`sprockets_http.run` calls."""
    application = app.Application(
        [
            ("/", HelloHandler),
            ("/fail", FailHandler),
            ("/teapot", TeapotHandler),
            ("/health", health.HealthHandler),
        ],
        service="hello",
        version="1.0.0",
        **settings,
    )
    application.runner_callbacks["before_run"].append(open_counter)
    application.runner_callbacks["on_start"].append(announce)
    application.runner_callbacks["shutdown"].append(close_counter)
    return application
