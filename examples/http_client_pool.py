"""A service whose extension owns a pooled HTTP client.

Start it with::

    python -m examples.http_client_pool

``GET /upstream`` fetches ``UPSTREAM_URL`` through the pool (by default this
service's own ``/status`` on ``PORT`` or 8000) and answers with what came
back; ``GET /status`` shows the extensions and their states.  The pool opens
before the first request is served and closes after the last one finished.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from tornado import httpclient, ioloop, web

import sprockets_http
from sprockets_http import app, extensions, health

LOGGER = logging.getLogger("examples.http_client_pool")


class HTTPClientPool(extensions.Extension):
    """An :class:`~tornado.httpclient.AsyncHTTPClient` for the whole service.

    :param max_clients: how many requests may be in flight at once; the
        others wait in the client's queue
    :param request_timeout: seconds a request may take
    """

    name = "http-client"
    version = "1.0.0"
    provides = ("http",)

    def __init__(self, max_clients: int = 10, request_timeout: float = 10.0) -> None:
        self.max_clients = max_clients
        self.request_timeout = request_timeout
        self._client: httpclient.AsyncHTTPClient | None = None

    @property
    def client(self) -> httpclient.AsyncHTTPClient:
        """The client; only between ``before_run`` and ``shutdown``."""
        if self._client is None:
            raise RuntimeError("the http-client extension is not running")
        return self._client

    def before_run(self, app: web.Application, io_loop: ioloop.IOLoop) -> None:
        # force_instance: a client of our own rather than the loop's shared
        # one, so that closing it cannot break anybody else's requests.
        self._client = httpclient.AsyncHTTPClient(
            force_instance=True,
            max_clients=self.max_clients,
            defaults={"request_timeout": self.request_timeout},
        )
        LOGGER.info("HTTP client pool open for %d requests at once", self.max_clients)

    def shutdown(self, app: web.Application) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        LOGGER.info("HTTP client pool closed")


class UpstreamHandler(web.RequestHandler):
    """Fetch the upstream through the pool and report what it answered."""

    def initialize(self, pool: HTTPClientPool, url: str) -> None:
        self.pool = pool
        self.url = url

    async def get(self) -> None:
        response = await self.pool.client.fetch(self.url, raise_error=False)
        self.write(
            {"url": self.url, "status": response.code, "bytes": len(response.body)}
        )


def make_app(**settings: Any) -> app.Application:
    """The application factory."""
    url = os.environ.get("UPSTREAM_URL") or (
        f"http://127.0.0.1:{os.environ.get('PORT') or 8000}/status"
    )
    pool = HTTPClientPool(max_clients=int(os.environ.get("MAX_CLIENTS", "10")))
    application = app.Application(
        [
            ("/upstream", UpstreamHandler, {"pool": pool, "url": url}),
            ("/status", health.StatusHandler),
        ],
        **settings,
    )
    application.add_extension(pool)
    return application


if __name__ == "__main__":
    sprockets_http.run(
        make_app,
        # One process keeps the example's log easy to follow; without this
        # setting it runs one worker, each with its own pool, per CPU.
        {"service": "http-client-pool", "version": "1.0.0", "number_of_procs": 1},
    )
