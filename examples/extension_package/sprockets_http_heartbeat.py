"""A sprockets_http extension that logs a heartbeat while the service runs.

Published in the ``sprockets_http.extensions`` entry-point group as
``heartbeat`` (see ``pyproject.toml``); a service turns it on with::

    sprockets_http.run(make_app, {"extensions": ["heartbeat"]})

The ``heartbeat_interval`` setting gives the seconds between two beats
(default 30).  The class has no ``version``: the registry reports the
version of this package.
"""

from __future__ import annotations

import logging

from tornado import ioloop, web

LOGGER = logging.getLogger("sprockets_http_heartbeat")


class Heartbeat:
    """Log one line every ``heartbeat_interval`` seconds while serving.

    Instantiated without arguments by the entry-point loader; the interval
    is read from the application's settings when the service starts.
    """

    name = "heartbeat"
    last = True  # beat only once everything else has started

    def __init__(self) -> None:
        self.beats = 0
        self._timer: ioloop.PeriodicCallback | None = None

    def on_start(self, app: web.Application, io_loop: ioloop.IOLoop) -> None:
        interval = float(app.settings.get("heartbeat_interval", 30))
        self._timer = ioloop.PeriodicCallback(self._beat, interval * 1000)
        self._timer.start()
        LOGGER.info("heartbeat every %.1f s", interval)

    def shutdown(self, app: web.Application) -> None:
        if self._timer is not None:
            self._timer.stop()
        LOGGER.info("heartbeat stopped after %d beat(s)", self.beats)

    def _beat(self) -> None:
        self.beats += 1
        LOGGER.info("heartbeat %d", self.beats)
