"""A service written the way ``sprockets.http`` 2.5.1 services are written.

Each behaviour the tests look at is switched on by an environment variable;
lifecycle events print ``event: NAME pid=N`` lines.

``STOP_IN``
    call ``app.stop(io_loop)`` from ``before_run``, ``on_start``, ``task``
    (a task an on_start callback spawns) or ``factory_limit`` (``on_start``,
    passing ``shutdown_limit`` 2); ``GET /stop`` always calls it
``WORKERS``
    ``number_of_procs`` (default 1)
``FACTORY``
    ``bare`` (``def make_app()``), ``explicit``
    (``def make_app(debug=False, **kw)``), ``plain`` (a plain
    ``tornado.web.Application`` with a ``runner_callbacks`` attribute),
    else the usual ``make_app(**settings)``
``USER_LOGGING``
    ``main``: configure logging with ``dictConfig`` before ``run()`` (and
    pass the same configuration to ``run()``); ``factory``: in the factory
``FAIL_BEFORE_RUN``
    a ``before_run`` callback raises ``RuntimeError("boom-before-run")``
``ON_START_CONSUMER``
    two more ``on_start`` callbacks first: one that never ends, one that fails
``PENDING``
    a shutdown callback leaves a write behind that takes 0.3 s, and a task
    that never ends
``START_SERVER``
    drive the loop as ``sprockets.http`` users did:
    ``Runner(app).start_server(port)`` then ``IOLoop.current().start()``
``SHUTDOWN_LIMIT``
    read by ``run()``
"""

from __future__ import annotations

import asyncio
import logging.config
import os
import sys
from typing import Any

from tornado import ioloop, web

import sprockets_http
from sprockets_http import app, mixins, runner

USER_LOG_CONFIG = {
    "version": 1,
    # disable_existing_loggers is left out: it defaults to True.
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "out": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"level": "INFO", "handlers": ["out"]},
}


def event(name: str) -> None:
    # One write per line: several processes may share this pipe.
    sys.stdout.write(f"event: {name} pid={os.getpid()}\n")
    sys.stdout.flush()


class BaseHandler(mixins.LoggingHandler, web.RequestHandler):
    pass


class FailingHandler(mixins.ErrorLogger, mixins.ErrorWriter, BaseHandler):
    def get(self) -> None:
        raise RuntimeError("handler broke")


class StopHandler(web.RequestHandler):
    def get(self) -> None:
        self.application.stop(ioloop.IOLoop.current())  # type: ignore[attr-defined]
        self.write({"stopping": True})


class SettingsHandler(web.RequestHandler):
    def get(self) -> None:
        self.write({"settings": sorted(self.application.settings)})


HANDLERS = [("/fail", FailingHandler), ("/stop", StopHandler), ("/", SettingsHandler)]


def before_run(application: Any, io_loop: ioloop.IOLoop) -> None:
    # Called before the loop runs, as sprockets.http called it.
    value = io_loop.run_sync(lambda: asyncio.sleep(0, "ran"))
    event(f"before_run run_sync={value}")
    if os.environ.get("FAIL_BEFORE_RUN"):
        raise RuntimeError("boom-before-run")
    if os.environ.get("STOP_IN") == "before_run":
        application.stop(io_loop)


async def consume_forever(application: Any, io_loop: ioloop.IOLoop) -> None:
    event("consumer started")
    while True:
        await asyncio.sleep(3600)


async def on_start_fails(application: Any, io_loop: ioloop.IOLoop) -> None:
    raise LookupError("boom-on-start")


def on_start(application: Any, io_loop: ioloop.IOLoop) -> None:
    event("on_start")
    stop_in = os.environ.get("STOP_IN")
    if stop_in == "on_start":
        application.stop(io_loop)
    elif stop_in == "factory_limit":
        application.stop(io_loop, 2.0)
    elif stop_in == "task":

        async def later() -> None:
            await asyncio.sleep(0.1)
            application.stop(io_loop)

        # The task itself is pending at shutdown: keep a reference.
        application.settings["stopper"] = asyncio.ensure_future(later())


def shutdown(application: Any) -> None:
    event("shutdown")
    if os.environ.get("PENDING"):

        async def flush() -> None:
            await asyncio.sleep(0.3)
            event("flushed")

        async def never_ends() -> None:
            await asyncio.Event().wait()

        loop = asyncio.get_running_loop()
        application.settings["pending"] = [
            loop.create_task(flush()),
            loop.create_task(never_ends(), name="never-ends"),
        ]


def add_callbacks(callbacks: dict[str, list[Any]]) -> None:
    callbacks["before_run"].append(before_run)
    if os.environ.get("ON_START_CONSUMER"):
        callbacks["on_start"] += [consume_forever, on_start_fails]
    callbacks["on_start"].append(on_start)
    callbacks["shutdown"].append(shutdown)


def make_app(**settings: Any) -> web.Application:
    # Called before the loop runs, as sprockets.http called it.
    result = ioloop.IOLoop.current().run_sync(lambda: asyncio.sleep(0, 1))
    event(f"factory run_sync={result}")
    event(f"factory settings={sorted(settings)}")
    if os.environ.get("USER_LOGGING") == "factory":
        logging.config.dictConfig(USER_LOG_CONFIG)
    kind = os.environ.get("FACTORY")
    if kind == "plain":
        plain = web.Application(HANDLERS, **settings)
        plain.runner_callbacks = {  # type: ignore[attr-defined]
            "before_run": [],
            "on_start": [],
            "shutdown": [],
        }
        add_callbacks(plain.runner_callbacks)  # type: ignore[attr-defined]
        return plain
    application = app.Application(HANDLERS, **settings)
    add_callbacks(application.runner_callbacks)  # type: ignore[arg-type]
    return application


def make_app_bare() -> web.Application:
    return make_app()


def make_app_explicit(debug: bool = False, **kw: Any) -> web.Application:
    event(f"explicit debug={debug}")
    return make_app(debug=debug, **kw)


def main() -> None:
    if os.environ.get("START_SERVER"):
        logging.basicConfig(level=logging.INFO, stream=sys.stdout)
        service = runner.Runner(make_app())
        service.start_server(int(os.environ["PORT"]))
        ioloop.IOLoop.current().start()
        event("loop stopped")
        return
    factories = {"bare": make_app_bare, "explicit": make_app_explicit}
    factory = factories.get(os.environ.get("FACTORY", ""), make_app)
    settings: dict[str, Any] = {"number_of_procs": int(os.environ.get("WORKERS", "1"))}
    if factory is not make_app_bare:
        settings["service"] = "dropin"
    if os.environ.get("USER_LOGGING") == "main":
        logging.config.dictConfig(USER_LOG_CONFIG)
        sprockets_http.run(factory, settings, USER_LOG_CONFIG)
    else:
        sprockets_http.run(factory, settings)


if __name__ == "__main__":
    main()
