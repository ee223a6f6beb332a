"""An application factory for the command-line tests to serve."""

from __future__ import annotations

import logging
import os
from typing import Any

from tornado import web

from sprockets_http import app, health

IMPORTED_WITH = dict(os.environ)
"""The environment as it was when this module was imported."""

NOT_CALLABLE = {"make_app": None}


class EnvironmentHandler(web.RequestHandler):
    """Answer the variables named by ``?name=`` as this module saw them."""

    def get(self) -> None:
        self.write(
            {name: IMPORTED_WITH.get(name) for name in self.get_query_arguments("name")}
        )


def make_app(**settings: Any) -> app.Application:
    """The application; ``TEST_EXTENSIONS`` lists extensions to load."""
    if os.environ.get("TEST_EXTENSIONS"):
        settings["extensions"] = os.environ["TEST_EXTENSIONS"].split(",")
    application = app.Application(
        [("/env", EnvironmentHandler), ("/status", health.StatusHandler)],
        **settings,
    )
    application.on_shutdown_callbacks.append(
        lambda app: logging.getLogger("cli_app").info("cli_app shut down")
    )
    return application
