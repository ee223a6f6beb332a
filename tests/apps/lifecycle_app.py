"""A service for the runner tests, shaped by environment variables.

Each lifecycle event prints one ``event: ...`` line so tests can follow the
order of events in the process's output.

``FAIL_BEFORE_RUN``
    a before_run callback raises ``RuntimeError("boom-before-run")``
``PLAIN_TORNADO``
    the factory returns a plain :class:`tornado.web.Application` and the
    callbacks are given to :class:`~sprockets_http.runner.Runner`
``SETTINGS_PORT``
    passed to ``run()`` as the ``port`` setting
``SENTRY_OUT``
    initialise Sentry with a transport that appends envelopes to this file,
    through the ``sentry_sdk_init`` setting given to ``run()``
``SLOW_BEFORE_RUN``
    a synchronous before_run callback, after the asynchronous one, sleeps
    this many seconds
``SENTRY_FROM_FACTORY``
    with ``SENTRY_OUT``: the factory puts ``version``, ``environment`` and
    ``sentry_sdk_init`` in the application's settings instead
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

from tornado import web

import sprockets_http
from sprockets_http import app, runner


def event(text: str) -> None:
    print(f"event: {text}", flush=True)


class SlowHandler(web.RequestHandler):
    async def get(self) -> None:
        event("slow request started")
        await asyncio.sleep(float(self.get_argument("t", "1")))
        self.write({"slept": True})


class StateHandler(web.RequestHandler):
    def get(self) -> None:
        self.write({"ready": self.application.settings.get("ready", False)})


class SentryHandler(web.RequestHandler):
    def get(self) -> None:
        import sentry_sdk

        self.write({"active": sentry_sdk.get_client().is_active()})


class LogHandler(web.RequestHandler):
    def get(self) -> None:
        logger = logging.getLogger("lifecycle_app")
        logger.error("an error record")
        logger.critical("a critical record")


class FailHandler(web.RequestHandler):
    def get(self) -> None:
        raise ValueError("handler exploded")


async def before_run_async(application: Any, io_loop: Any) -> None:
    await asyncio.sleep(0.2)
    application.settings["ready"] = True
    event("before_run async done")


def before_run_slow(application: Any, io_loop: Any) -> None:
    event("before_run sync sleeping")
    time.sleep(float(os.environ["SLOW_BEFORE_RUN"]))
    event("before_run sync done")


def before_run_fail(application: Any, io_loop: Any) -> None:
    raise RuntimeError("boom-before-run")


def on_start(application: Any, io_loop: Any) -> None:
    event("on_start")


def shutdown_fail(application: Any) -> None:
    event("shutdown sync failing")
    raise RuntimeError("boom-shutdown")


def shutdown_future(application: Any) -> asyncio.Future[None]:
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.05, future.set_result, None)
    future.add_done_callback(lambda _: event("shutdown future done"))
    return future


async def shutdown_async(application: Any) -> None:
    await asyncio.sleep(0.05)
    event("shutdown async done")


CALLBACKS = {
    "before_run": [before_run_async],
    "on_start": [on_start],
    "shutdown": [shutdown_fail, shutdown_future, shutdown_async],
}
if os.environ.get("SLOW_BEFORE_RUN"):
    CALLBACKS["before_run"].append(before_run_slow)
if os.environ.get("FAIL_BEFORE_RUN"):
    CALLBACKS["before_run"].append(before_run_fail)

HANDLERS = [
    ("/slow", SlowHandler),
    ("/state", StateHandler),
    ("/fail", FailHandler),
    ("/sentry", SentryHandler),
    ("/log", LogHandler),
]


def make_app(**settings: Any) -> app.Application:
    if os.environ.get("SENTRY_FROM_FACTORY"):
        settings.update(
            version="9.9.9",
            environment="from-factory",
            sentry_sdk_init=sentry_settings(),
        )
    application = app.Application(HANDLERS, **settings)
    for phase, callbacks in CALLBACKS.items():
        application.runner_callbacks[phase].extend(callbacks)
    return application


def main() -> None:
    settings: dict[str, Any] = {
        "service": "lifecycle",
        "version": "1.2.3",
        "number_of_procs": 1,
    }
    if os.environ.get("SETTINGS_PORT"):
        settings["port"] = int(os.environ["SETTINGS_PORT"])
    if os.environ.get("SENTRY_OUT") and not os.environ.get("SENTRY_FROM_FACTORY"):
        settings["sentry_sdk_init"] = sentry_settings()
    if os.environ.get("PLAIN_TORNADO"):
        # Runner users configure logging themselves; run() does it for them.
        logging.basicConfig(level=logging.INFO)
        application = web.Application(HANDLERS)
        the_runner = runner.Runner(application, **CALLBACKS)  # type: ignore[arg-type]
        the_runner.run(int(os.environ["PORT"]), 1)
        return
    sprockets_http.run(make_app, settings)


def sentry_settings() -> dict[str, Any]:
    return {
        "dsn": "http://key@127.0.0.1:9/1",
        "transport": _file_transport(os.environ["SENTRY_OUT"]),
    }


def _file_transport(path: str) -> Any:
    import sentry_sdk.transport

    class FileTransport(sentry_sdk.transport.Transport):
        def capture_envelope(self, envelope: Any) -> None:
            with open(path, "ab") as stream:
                stream.write(envelope.serialize() + b"\n")

    return FileTransport


if __name__ == "__main__":
    sys.exit(main())
