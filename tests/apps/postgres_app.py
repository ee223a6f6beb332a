"""A service on sprockets-postgres, for ``tests/test_compat_postgres.py``.

sprockets-postgres 1.8.1 was written for ``sprockets.http``: its
``ApplicationMixin`` adds an ``on_start`` callback that opens a connection
pool (stopping the application with ``app.stop(io_loop)`` when it cannot)
and a ``shutdown`` callback that closes it.  The database comes from the
``POSTGRES_URL`` environment variable, which sprockets-postgres reads.

``GET /answer``
    runs ``SELECT 41 + 1`` in the database and answers ``{"answer": 42}``
``GET /status``
    sprockets-postgres's own status handler: 200 once the pool is connected
"""

from __future__ import annotations

from typing import Any

import sprockets_postgres
from tornado import web

import sprockets_http
from sprockets_http import app


class Application(sprockets_postgres.ApplicationMixin, app.Application):
    pass


class AnswerHandler(sprockets_postgres.RequestHandlerMixin, web.RequestHandler):
    async def get(self) -> None:
        result = await self.postgres_execute(
            "SELECT %(number)s::INTEGER + 1 AS answer", {"number": 41}
        )
        self.write({"answer": result.row["answer"]})


def make_app(**settings: Any) -> Application:
    return Application(
        [
            web.url("/answer", AnswerHandler),
            web.url("/status", sprockets_postgres.StatusRequestHandler),
        ],
        **settings,
    )


if __name__ == "__main__":
    sprockets_http.run(make_app, {"number_of_procs": 1, "shutdown_limit": 2})
