"""Replacing a worker after it has served a number of requests.

A worker whose memory grows with every request (a leak in a library, a
cache without bound) can be recycled: with ``max_requests`` set
(``MAX_REQUESTS``, ``--max-requests``; 0, the default, never), a worker
that has served that many requests, plus a random 0 to
``max_requests_jitter`` drawn once for it (so that workers started together
are not all replaced together), tells its supervisor once, which replaces it
as SIGHUP does: the replacement is started and ready first, then the old
worker stops accepting and drains, without ``shutdown_delay`` and without
failing the health check (see :mod:`sprockets_http.supervisor`).

Requests are counted by the worker's
:class:`~sprockets_http.drain.DrainingHTTPServer` (one addition per
request) and compared with the limit every :data:`CHECK_INTERVAL` seconds,
so a busy worker may serve a few more before it is told to stop, and it
serves until its replacement is ready.  One process, without a supervisor,
is never recycled.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import random
import socket

from tornado import ioloop

from sprockets_http import _channel
from sprockets_http.runner import Runner

CHECK_INTERVAL = 0.25
"""Seconds between two looks at a worker's request count."""


def request_limit(max_requests: int, jitter: int) -> int:
    """The number of requests after which one new worker is recycled.

    :returns: 0 when ``max_requests`` is 0 (never), else ``max_requests``
        plus a random whole number from 0 to ``jitter``
    """
    if not max_requests:
        return 0
    return max_requests + random.randint(0, jitter)


def watch_requests(
    runner: Runner, limit: int, channel: socket.socket
) -> ioloop.PeriodicCallback:
    """In a ready worker: tell the parent once ``limit`` requests were served.

    :returns: the started callback, which stops itself once it told
    """

    def check() -> None:
        served = runner.server.requests_received if runner.server else 0
        if served >= limit:
            watch.stop()
            _channel.send(channel, _channel.RECYCLE, served)

    watch = ioloop.PeriodicCallback(check, CHECK_INTERVAL * 1000)
    watch.start()
    return watch
