"""What a supervising parent and each of its workers tell each other.

The parent makes a socket pair before it forks a worker; each keeps one
end.  Messages are lines of ASCII: a name, then optionally a space and a
value.

From a worker to its parent:

``ready BUDGET``
    the ``before_run`` callbacks are done and it listens; ``BUDGET`` is its
    stop budget in seconds
``stop``
    the application asked the service to stop
``beat``
    its event loop runs (see :mod:`sprockets_http.heartbeat`)
``recycle COUNT``
    it has served ``COUNT`` requests, its share of ``max_requests``: the
    parent should replace it (see :mod:`sprockets_http.recycle`)

From the parent to a worker:

``replace``
    stop gracefully, as on SIGTERM, because another worker takes over: the
    service stays up, so skip ``shutdown_delay`` and keep the health check
    answering ``ok``

Besides these lines, a worker the parent sends
:data:`~sprockets_http.heartbeat.DUMP_SIGNAL` writes the stacks of its
threads (:mod:`faulthandler`'s text) on its end; the parent reads that
raw.  A worker that reads end-of-file knows the parent is gone: only the
parent holds the other end.
"""

from __future__ import annotations

import contextlib
import socket

READY = "ready"
STOP = "stop"
BEAT = "beat"
RECYCLE = "recycle"
REPLACE = "replace"


def send(channel: socket.socket, name: str, value: object = None) -> bool:
    """Send one message; :data:`False` when the other end is gone."""
    line = name if value is None else f"{name} {value}"
    # OSError: the other side exited; its death is noticed elsewhere.
    with contextlib.suppress(OSError):
        channel.sendall(line.encode() + b"\n")
        return True
    return False


class Lines:
    """Splits what a channel delivers into ``(name, value)`` messages."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        """The whole messages ``data`` completes, in order."""
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        messages = []
        for line in lines:
            name, _, value = line.decode("ascii", "replace").partition(" ")
            messages.append((name, value))
        return messages
