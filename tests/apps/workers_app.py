"""A service for the worker tests, shaped by environment variables.

Each lifecycle callback prints one ``event: NAME pid=N`` line, so tests can
tell which worker ran what.  ``GET /`` answers ``{"pid": N}`` and
``/health`` is :class:`sprockets_http.health.HealthHandler`.  ``GET /slow``
prints ``event: slow`` and answers after ``?seconds=`` (default 2) seconds;
``GET /block`` prints ``event: block`` and blocks its event loop for an
hour with ``time.sleep``.

``WORKERS``
    ``number_of_procs`` (default 2)
``FAIL_BEFORE_RUN``
    a ``before_run`` callback raises
``BLOCK_SHUTDOWN``
    a synchronous ``shutdown`` callback blocks for an hour
``USE_RUNNER``
    create the application first and call :meth:`Runner.run` (instead of
    :func:`sprockets_http.run`), with ``shutdown_limit`` from
    ``SHUTDOWN_LIMIT`` (default 5)

``SHUTDOWN_DELAY`` and ``PORT`` are read by :func:`sprockets_http.run`.
"""

from __future__ import annotations

import asyncio
import logging.config
import os
import sys
import time
from typing import Any

from tornado import ioloop, web

import sprockets_http
from sprockets_http import app, health, logconfig, runner


def event(name: str) -> None:
    # One write per line: several processes share this pipe.
    sys.stdout.write(f"event: {name} pid={os.getpid()}\n")
    sys.stdout.flush()


class PidHandler(web.RequestHandler):
    def get(self) -> None:
        self.write({"pid": os.getpid()})


class SlowHandler(web.RequestHandler):
    async def get(self) -> None:
        event("slow")
        await asyncio.sleep(float(self.get_query_argument("seconds", "2")))
        self.write({"pid": os.getpid()})


class BlockingHandler(web.RequestHandler):
    def get(self) -> None:
        event("block")
        time.sleep(3600)  # the line a blocked worker's stacks must show


def before_run(application: web.Application, io_loop: ioloop.IOLoop) -> None:
    event("before_run")
    if os.environ.get("FAIL_BEFORE_RUN"):
        raise RuntimeError("before_run failed on purpose")


def on_start(application: web.Application, io_loop: ioloop.IOLoop) -> None:
    event("on_start")


def shutdown(application: web.Application) -> None:
    event("shutdown")
    if os.environ.get("BLOCK_SHUTDOWN"):
        time.sleep(3600)


def make_app(**settings: Any) -> app.Application:
    application = app.Application(
        [
            ("/", PidHandler),
            ("/health", health.HealthHandler),
            ("/slow", SlowHandler),
            ("/block", BlockingHandler),
        ],
        **settings,
    )
    application.before_run_callbacks.append(before_run)
    application.on_start_callbacks.append(on_start)
    application.on_shutdown_callbacks.append(shutdown)
    return application


def main() -> None:
    workers = int(os.environ.get("WORKERS", "2"))
    if os.environ.get("USE_RUNNER"):
        logging.config.dictConfig(logconfig.default_config())
        service = runner.Runner(make_app())
        service.shutdown_limit = float(os.environ.get("SHUTDOWN_LIMIT", "5"))
        service.run(int(os.environ["PORT"]), workers)
    else:
        sprockets_http.run(make_app, {"number_of_procs": workers})


if __name__ == "__main__":
    main()
