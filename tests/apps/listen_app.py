"""A service for the listening tests: it says whom it believes the client is.

``GET /`` answers ``{"pid", "remote_ip", "protocol"}`` as the handler sees
them; ``GET /env?name=N`` answers the environment variables ``N`` as they
are now.  With ``XHEADERS=0`` the application's ``xheaders`` setting is off.
"""

from __future__ import annotations

import os
from typing import Any

from tornado import web

from sprockets_http import app


class WhoHandler(web.RequestHandler):
    def get(self) -> None:
        self.write(
            {
                "pid": os.getpid(),
                "remote_ip": self.request.remote_ip,
                "protocol": self.request.protocol,
            }
        )


class EnvironmentHandler(web.RequestHandler):
    def get(self) -> None:
        self.write(
            {name: os.environ.get(name) for name in self.get_query_arguments("name")}
        )


def make_app(**settings: Any) -> app.Application:
    if os.environ.get("XHEADERS") == "0":
        settings["xheaders"] = False
    return app.Application(
        [("/", WhoHandler), ("/env", EnvironmentHandler)], **settings
    )
