"""A service whose code the reload tests copy, edit and reload.

The tests copy this file into a temporary directory on ``PYTHONPATH``, as
``reloadable.py``, and serve it with ``python -m reloadable`` or ``python -m
sprockets_http reloadable:make_app``; they then edit ``VERSION`` or
``FAIL_BEFORE_RUN`` (or break the module) and send SIGHUP, or let the
development reload notice.  ``GET /`` answers ``{"version": VERSION, "pid":
N}``; ``/health`` is the health handler.  The shutdown callback prints
``event: shutdown version=VERSION``.  ``NUMBER_OF_PROCS`` and the other
settings come from the environment.
"""

from __future__ import annotations

import os
from typing import Any

from tornado import ioloop, web

import sprockets_http
from sprockets_http import app, health

VERSION = "one"
FAIL_BEFORE_RUN = False


class VersionHandler(web.RequestHandler):
    def get(self) -> None:
        self.write({"version": VERSION, "pid": os.getpid()})


def before_run(application: web.Application, io_loop: ioloop.IOLoop) -> None:
    if FAIL_BEFORE_RUN:
        raise RuntimeError(f"before_run of version {VERSION} fails on purpose")


def shutdown(application: web.Application) -> None:
    print(f"event: shutdown version={VERSION}", flush=True)


def make_app(**settings: Any) -> app.Application:
    application = app.Application(
        [("/", VersionHandler), ("/health", health.HealthHandler)], **settings
    )
    application.before_run_callbacks.append(before_run)
    application.on_shutdown_callbacks.append(shutdown)
    return application


if __name__ == "__main__":
    sprockets_http.run(make_app)
