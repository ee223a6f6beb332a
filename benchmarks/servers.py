"""The services the benchmarks load: bare Tornado and sprockets_http.

``python benchmarks/servers.py KIND PORT [PROCESSES]`` serves one of:

``bare-hello`` / ``sprockets-hello``
    a handler that answers ``{"hello": "world"}``
``bare-error`` / ``sprockets-error``
    a handler that raises ``HTTPError(404)``: Tornado's HTML error page,
    or ErrorLogger + ErrorWriter's JSON document

Both kinds log through the same configuration, at the level named by
``BENCH_LOG_LEVEL`` (default ``WARNING``), to standard error.  The sprockets
kinds run through :func:`sprockets_http.run`, the bare ones through
:class:`tornado.httpserver.HTTPServer` alone.
"""

from __future__ import annotations

import asyncio
import logging.config
import os
import sys
from typing import Any

from tornado import httpserver, web

import sprockets_http
from sprockets_http import app, logconfig, mixins


def log_config() -> dict[str, Any]:
    config = logconfig.default_config(log_format="json")
    config["root"]["level"] = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
    return config


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
    server = httpserver.HTTPServer(web.Application([("/", handler)]), xheaders=True)
    server.listen(port, "127.0.0.1")
    logging.getLogger("bench").warning("serving on port %d", port)
    await asyncio.Event().wait()


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    processes = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    flavour, _, name = kind.partition("-")
    if flavour == "bare":
        logging.config.dictConfig(log_config())
        handler = {"hello": BareHello, "error": BareError}[name]
        asyncio.run(serve_bare(handler, port))
        return
    handler = {"hello": Hello, "error": Error}[name]
    sprockets_http.run(
        lambda **settings: app.Application([("/", handler)], **settings),
        {"port": port, "number_of_procs": processes},
        log_config=log_config(),
    )


if __name__ == "__main__":
    main()
