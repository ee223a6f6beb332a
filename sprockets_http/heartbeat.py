"""Noticing a serving process whose event loop is blocked, and showing where.

A handler that calls a blocking function (``time.sleep``, a synchronous
database driver waiting on a lock, a loop that never ends) blocks every
request of its process, and the process still looks alive from outside.
The ``worker_timeout`` setting (``WORKER_TIMEOUT``, ``--worker-timeout``;
default 30 seconds, 0 turns this off) bounds that:

With several workers
    each worker, once ready, sends ``beat`` to its supervisor every
    :func:`beat_interval` seconds from a callback of its event loop (see
    :mod:`sprockets_http._channel`).  A worker silent for
    ``worker_timeout`` seconds is sent :data:`DUMP_SIGNAL`, on which
    :mod:`faulthandler`, registered at the worker's start, writes the stack
    of every thread to the channel, without needing the blocked loop or the
    interpreter's lock.  The supervisor logs those stacks as one ERROR
    record, kills the worker with SIGKILL and replaces it.
With one process
    a watchdog thread checks a timestamp that a callback of the event loop
    refreshes.  When it is ``worker_timeout`` seconds old, the stacks are
    logged as one WARNING record and the process exits with
    :data:`EXIT_LOOP_BLOCKED`, so that its orchestrator restarts it.

In both, each ``File "...", line N in function`` line of the stacks is
followed by that line of source, so the log shows which call blocked.  The
watch starts once the process is ready (the factory and ``before_run``
callbacks may take as long as they need) and ends when it begins to stop
(the stop budget bounds that).  Debug mode does not watch: a debugger
stopped at a breakpoint blocks the loop too.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import faulthandler
import linecache
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from tornado import ioloop

from sprockets_http import _channel
from sprockets_http.runner import Runner, serve_until_stopped

LOGGER = logging.getLogger("sprockets_http.heartbeat")

EXIT_LOOP_BLOCKED = 75
"""Exit status of one process whose event loop was blocked for
``worker_timeout`` seconds (``EX_TEMPFAIL``: restarting it may help)."""

DUMP_SIGNAL: int = (
    signal.SIGRTMIN + 5 if hasattr(signal, "SIGRTMIN") else signal.SIGUSR2
)
"""The signal on which a worker writes its threads' stacks to its channel.

A real-time signal that nothing else uses (``SIGUSR2`` where there are
none), so that a service keeps ``SIGUSR1`` and ``SIGUSR2`` for itself.
"""

DUMP_WAIT = 0.5
"""Seconds the supervisor reads a silent worker's stacks before killing it."""

_FRAME = re.compile(r'^(\s*)File "(.+)", line (\d+) in ')


def beat_interval(timeout: float) -> float:
    """Seconds between two beats for a ``worker_timeout`` of ``timeout``."""
    return min(1.0, timeout / 4)


def start_beating(channel: socket.socket, timeout: float) -> ioloop.PeriodicCallback:
    """In a ready worker: beat to the parent from the current event loop.

    Also registers :data:`DUMP_SIGNAL` with :mod:`faulthandler`, writing to
    ``channel``.

    :returns: the started callback
    """
    faulthandler.register(DUMP_SIGNAL, file=channel.fileno(), all_threads=True)

    def send_beat() -> None:
        _channel.send(channel, _channel.BEAT)

    beat = ioloop.PeriodicCallback(send_beat, beat_interval(timeout) * 1000)
    beat.start()
    return beat


def with_source(stacks: str) -> str:
    """``stacks`` in :mod:`faulthandler`'s format, each frame followed by its
    line of source when the file can be read."""
    lines = []
    for line in stacks.splitlines():
        lines.append(line)
        frame = _FRAME.match(line)
        if frame:
            indent, path, number = frame.groups()
            source = linecache.getline(path, int(number)).strip()
            if source:
                lines.append(f"{indent}    {source}")
    return "\n".join(lines)


def log_stacks(
    logger: logging.Logger, level: int, stacks: str, message: str, *args: object
) -> None:
    """Log one record whose traceback field holds ``stacks``, with source.

    The JSON format puts them in ``exception``, the text format under the
    message, as for any traceback.
    """
    if not logger.isEnabledFor(level):
        return
    record = logger.makeRecord(
        logger.name, level, __file__, 0, message, args, exc_info=None
    )
    record.exc_text = with_source(stacks)
    logger.handle(record)


def serve_watched(
    make_runner: Callable[[], Runner], sockets: list[socket.socket], timeout: float
) -> None:
    """:func:`~sprockets_http.runner.serve_until_stopped`, with a watchdog.

    :param timeout: seconds the event loop may be blocked before the
        process logs its stacks and exits with :data:`EXIT_LOOP_BLOCKED`
    """
    watchdog = _Watchdog(timeout)

    def make_watched_runner() -> Runner:
        runner = make_runner()
        previous = runner.on_stop

        def on_stop(signo: int | None) -> None:
            watchdog.stop()
            if previous is not None:
                previous(signo)

        runner.on_stop = on_stop
        return runner

    try:
        serve_until_stopped(make_watched_runner, sockets, lambda _: watchdog.start())
    finally:
        watchdog.stop()


class _Watchdog:
    """A thread that ends the process when the event loop stops refreshing."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._interval = beat_interval(timeout)
        self._last = time.monotonic()
        self._stopped = threading.Event()
        self._refresh: ioloop.PeriodicCallback | None = None

    def start(self) -> None:
        """Start watching the current event loop (call it from the loop)."""
        self._last = time.monotonic()
        self._refresh = ioloop.PeriodicCallback(self._beat, self._interval * 1000)
        self._refresh.start()
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        if self._refresh is not None:
            self._refresh.stop()

    def _beat(self) -> None:
        self._last = time.monotonic()

    def _watch(self) -> None:
        while not self._stopped.wait(self._interval):
            blocked = time.monotonic() - self._last
            if blocked >= self._timeout:
                self._exit(blocked)

    def _exit(self, blocked: float) -> None:
        # Logging may block too (a full pipe on stderr is one way a loop
        # blocks): exit anyway, a little later.
        threading.Timer(2.0, os._exit, (EXIT_LOOP_BLOCKED,)).start()
        log_stacks(
            LOGGER,
            logging.WARNING,
            _own_stacks(),
            "the event loop has been blocked for %.1f s (worker_timeout %.1f s); "
            "exiting with status %d so that the service is restarted (pid %d). "
            "Its threads, most recent call first:",
            blocked,
            self._timeout,
            EXIT_LOOP_BLOCKED,
            os.getpid(),
        )
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(EXIT_LOOP_BLOCKED)


def _own_stacks() -> str:
    # faulthandler writes to a file descriptor; a temporary file holds any
    # length, where a pipe read by this same thread could fill up.
    with tempfile.TemporaryFile() as dump:
        faulthandler.dump_traceback(dump, all_threads=True)
        dump.seek(0)
        return dump.read().decode("utf-8", "replace")
