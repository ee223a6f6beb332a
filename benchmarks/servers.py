"""The services the benchmarks load: bare Tornado and sprockets_http.

``python benchmarks/servers.py KIND PORT [PROCESSES]`` serves one of:

``bare-hello``
    the plain Tornado a user would otherwise run: ``Application.listen()``
    (Tornado's defaults, so no ``xheaders``), one route, a handler that
    answers ``{"hello": "world"}``, and ``logging.basicConfig()`` at INFO
    with a timestamp, so Tornado writes its own access line for every
    request to standard error;
``bare-error``
    the same, with a handler that raises ``HTTPError(404)`` (Tornado's HTML
    page, and its access line at WARNING);
``sprockets-hello`` / ``sprockets-error``
    the same handlers with ErrorLogger and ErrorWriter, served by
    :func:`sprockets_http.run` as a service would be: its default logging
    (JSON lines to standard error, at INFO, so every access record is
    written with its fields and request id) and a
    :class:`~sprockets_http.metrics.MetricsHandler` mounted, so every
    request is counted;
``sprockets-routes``
    a service with ``BENCH_ROUTES`` (default 50) handlers on ``/h/N`` and
    the metrics handler, for timing scrapes.

``BENCH_LOG_LEVEL`` sets the level of both sides (default ``INFO``); the
sprockets side takes ``LOOP`` from the environment like any service, and,
to find where time goes, ``BENCH_METRICS=0`` leaves the metrics handler out
and ``BENCH_XHEADERS=0`` turns ``xheaders`` off (``BENCH_XHEADERS=1`` turns it
on for the bare side).  ``BENCH_SAMPLING=0`` stops the work done on timers
(the metrics' sampling of loop lag and resources, and the watchdog of
``worker_timeout``), for counting the instructions a request takes: under
valgrind a request takes fifty times as long, and so does the timed work
between two requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from tornado import web

import sprockets_http
from sprockets_http import app, metrics, mixins

LEVEL = os.environ.get("BENCH_LOG_LEVEL", "INFO")


class BareHello(web.RequestHandler):
    def get(self) -> None:
        self.write({"hello": "world"})


class BareError(web.RequestHandler):
    def get(self) -> None:
        raise web.HTTPError(404)


class Hello(mixins.ErrorLogger, mixins.ErrorWriter, web.RequestHandler):
    def get(self) -> None:
        self.write({"hello": "world"})


class Error(mixins.ErrorLogger, mixins.ErrorWriter, web.RequestHandler):
    def get(self) -> None:
        raise web.HTTPError(404)


async def serve_bare(handler: type[web.RequestHandler], port: int) -> None:
    xheaders = os.environ.get("BENCH_XHEADERS") == "1"
    web.Application([("/", handler)]).listen(port, "127.0.0.1", xheaders=xheaders)
    logging.getLogger("bench").warning("serving on port %d", port)
    stopped = asyncio.Event()  # SIGTERM ends it normally (for a profiler)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    await stopped.wait()


def make_app(**settings: Any) -> app.Application:
    kind = os.environ["BENCH_KIND"]
    if kind == "routes":
        handlers: list[Any] = [
            (f"/h/{n}", type(f"Handler{n}", (Hello,), {}))
            for n in range(int(os.environ.get("BENCH_ROUTES", "50")))
        ]
    else:
        handlers = [("/", {"hello": Hello, "error": Error}[kind])]
    if os.environ.get("BENCH_METRICS", "1") == "1":
        handlers.append(("/metrics", metrics.MetricsHandler))
    if os.environ.get("BENCH_SAMPLING") == "0":
        metrics._sampler.start = lambda: None  # type: ignore[method-assign]
    if os.environ.get("BENCH_XHEADERS"):
        settings["xheaders"] = os.environ["BENCH_XHEADERS"] == "1"
    return app.Application(handlers, **settings)


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    processes = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    flavour, _, name = kind.partition("-")
    if flavour == "bare":
        logging.basicConfig(
            level=LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        handler = {"hello": BareHello, "error": BareError}[name]
        asyncio.run(serve_bare(handler, port))
        return
    os.environ["BENCH_KIND"] = name
    config = sprockets_http.logconfig.default_config(log_format="json")
    config["root"]["level"] = LEVEL
    settings: dict[str, Any] = {"port": port, "number_of_procs": processes}
    if os.environ.get("BENCH_SAMPLING") == "0":
        settings["worker_timeout"] = 0
    sprockets_http.run(make_app, settings, log_config=config)


if __name__ == "__main__":
    main()
