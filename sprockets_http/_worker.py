"""A worker's life after the fork: its signals, its channel to the parent.

:mod:`sprockets_http.supervisor` forks each worker and calls :func:`serve`
in it.  The worker serves like one process (see
:func:`~sprockets_http.runner.serve_until_stopped`), with these differences:

* it obeys SIGTERM only: SIGINT comes from a terminal's Ctrl-C, to the
  whole process group, and the parent relays it as SIGTERM; it ignores
  SIGHUP, which a closed terminal sends to the whole group too, and on
  which the parent replaces it;
* it talks with its parent over its end of a socket pair (see
  :mod:`sprockets_http._channel`): it says when it is ready, when the
  application asked to stop, beats (see :mod:`sprockets_http.heartbeat`)
  and asks to be recycled (see :mod:`sprockets_http.recycle`); told
  ``replace``, it stops as a replaced process does (see
  :meth:`~sprockets_http.runner.Runner.request_stop`);
* when it reads end-of-file there, its parent is gone, even killed with
  SIGKILL, and it stops gracefully.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
from collections.abc import Callable

from sprockets_http import _channel, heartbeat, recycle
from sprockets_http.runner import Runner, serve_until_stopped

# Its lines are the supervisor's, as they were before this module existed.
LOGGER = logging.getLogger("sprockets_http.supervisor")


def serve(
    make_runner: Callable[[], Runner],
    sockets: list[socket.socket],
    channel: socket.socket,
    mask: set[int | signal.Signals],
    worker_timeout: float,
    request_limit: int,
) -> int:
    """A worker's whole life, after the fork; returns its exit status.

    :param mask: the signal mask to restore once the worker's own signal
        handlers are in place
    :param worker_timeout: beat to the parent (see
        :mod:`sprockets_http.heartbeat`) unless 0
    :param request_limit: ask to be recycled after this many requests
        unless 0
    """
    # Only the parent talks to systemd.
    os.environ.pop("NOTIFY_SOCKET", None)
    # A parent that stops reading (stopped by a debugger, frozen) must not
    # block this worker's loop on a full channel: its messages are dropped.
    channel.setblocking(False)
    # A SIGTERM that arrives before the runner handles signals itself is
    # remembered and handed to the runner once it does.  SIGINT comes from
    # a terminal's Ctrl-C, to the whole process group: the parent's SIGTERM
    # is the one to obey.  So does SIGHUP when a terminal hangs up, and the
    # parent replaces its workers on it.
    early_stops: list[int] = []
    signal.signal(signal.SIGTERM, lambda signo, frame: early_stops.append(signo))
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGHUP, _ignore)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def make_worker_runner() -> Runner:
        runner = make_runner()
        runner.stop_signals = (signal.SIGTERM,)
        runner.ignored_signals = ()  # SIGHUP stays ignored, without a word
        runner.on_stop = functools.partial(_tell_parent_of_stop, channel)
        loop = asyncio.get_event_loop()  # made by serve_until_stopped, not running
        lines = _channel.Lines()
        loop.add_reader(channel, _watch_parent, runner, channel, loop, lines)
        loop.call_soon(_replay_early_stops, runner, early_stops)
        return runner

    def report_ready(runner: Runner) -> None:
        _channel.send(channel, _channel.READY, runner.stop_budget)
        if worker_timeout:
            heartbeat.start_beating(channel, worker_timeout)
        if request_limit:
            recycle.watch_requests(runner, request_limit, channel)

    try:
        serve_until_stopped(make_worker_runner, sockets, report_ready)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 1
    return 0


def _tell_parent_of_stop(channel: socket.socket, signo: int | None) -> None:
    if signo is None:  # the application asked, not a signal
        _channel.send(channel, _channel.STOP)


def _replay_early_stops(runner: Runner, early_stops: list[int]) -> None:
    # Runs once Runner.serve handles the stop signals through the loop.
    for signo in early_stops:
        runner.request_stop(signo)


def _watch_parent(
    runner: Runner,
    channel: socket.socket,
    loop: asyncio.AbstractEventLoop,
    lines: _channel.Lines,
) -> None:
    try:
        data = channel.recv(512)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if not data:
        loop.remove_reader(channel)
        LOGGER.warning("supervisor is gone, stopping (pid %d)", os.getpid())
        runner.request_stop(signal.SIGTERM)
        return
    for name, _ in lines.feed(data):
        if name == _channel.REPLACE:
            runner.request_stop(signal.SIGTERM, replacing=True)


def _ignore(signo: int, frame: object) -> None:
    """A Python-level handler that does nothing."""
