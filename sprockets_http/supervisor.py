"""Several worker processes sharing one port, watched by a supervising parent.

:func:`serve` runs one process when asked for one, else a
:class:`Supervisor`: the parent process binds the port once, forks the
workers, and then only watches them; it never serves a request and never
creates an event loop or a thread.  Each worker creates the application in
its own asyncio loop and runs the whole lifecycle of
:class:`~sprockets_http.runner.Runner`.

Every worker tells the parent when it is ready (``before_run`` done and
listening).  Once all are, the parent logs one line and, when
``NOTIFY_SOCKET`` is set, tells systemd ``READY=1``.

Signals to the parent:

SIGTERM, SIGINT
    Forwarded to every worker, which stops gracefully (see
    :mod:`sprockets_http.runner`); systemd is told ``STOPPING=1``.  The
    parent exits once every worker has.  A second SIGTERM or SIGINT kills
    the workers with SIGKILL.  Ctrl-C in a terminal signals the whole
    process group, so each worker gets SIGINT twice (from the terminal and
    from the parent) and stops without waiting: no ``shutdown_delay``, no
    waiting for in-flight requests, but its shutdown callbacks still run.
SIGHUP
    Rolling restart, one worker at a time: start a new worker, wait until it
    is ready, then stop the old one gracefully, telling it that it is
    replaced (so its WebSockets are closed with 1012, Service Restart, and
    their clients reconnect at once to another worker).  The port never
    stops accepting.  New workers are forked from the parent, so they run
    the code the parent loaded: a restart re-creates the applications
    (re-reading whatever the factory reads) but does not load new code.
SIGTTIN, SIGTTOU
    One worker more, one worker less (never fewer than one); the worker
    removed is told it is replaced, as on SIGHUP.

A worker that dies unexpectedly is replaced: at once when it had been up
for :data:`STABLE_AFTER` seconds, else after a delay that doubles with each
quick death in a row, from :data:`FIRST_BACKOFF` up to :data:`MAX_BACKOFF`.
A worker that exits with :data:`~sprockets_http.runner.EXIT_START_FAILED`
before it was ready is not replaced: the parent stops the other workers and
exits with that status.

Each worker reports its :attr:`~sprockets_http.runner.Runner.stop_budget`
with its readiness.  A worker still alive :data:`KILL_MARGIN` seconds after
its budget has run out since it was told to stop is killed with SIGKILL.
The parent uses the largest budget any worker reported, or
:data:`UNREADY_BUDGET` while none has.

The parent's exit status:

``0``
    every worker stopped gracefully and exited with status 0;
``1``
    a worker exited with another status while the service stopped;
:data:`~sprockets_http.runner.EXIT_START_FAILED` (70)
    a worker failed before it was ready;
:data:`EXIT_WORKERS_KILLED` (137)
    the parent had to kill a worker with SIGKILL while stopping (a second
    signal, or a worker over its budget).

Workers notice when the parent dies, even of SIGKILL: each watches its end
of a socket pair whose other end only the parent holds, and stops
gracefully when it reads end-of-file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from sprockets_http import _systemd
from sprockets_http.runner import (
    EXIT_START_FAILED,
    Runner,
    serve_until_stopped,
    use_for_several_processes,
)

LOGGER = logging.getLogger("sprockets_http.supervisor")

EXIT_WORKERS_KILLED = 137
"""Exit status when a worker had to be killed while stopping (128 + SIGKILL)."""

KILL_MARGIN = 3.0
"""Seconds a stopping worker gets on top of its stop budget."""

UNREADY_BUDGET = 30.0
"""Stop budget of a worker when no worker has reported one yet."""

STABLE_AFTER = 10.0
"""Seconds after which a worker's death no longer counts as a quick one."""

FIRST_BACKOFF = 0.5
"""Seconds before replacing a worker that died quickly, the first time."""

MAX_BACKOFF = 30.0
"""The longest wait before replacing a worker that keeps dying."""

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_HANDLED_SIGNALS = (
    *_STOP_SIGNALS,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)
# What a worker tells the parent, one line each.
_READY = b"ready"  # followed by the worker's stop budget
_STOP = b"stop"  # the application asked the service to stop
# What the parent tells a worker: stop gracefully, the service goes on
# (Runner.request_stop(replacing=True)).  A signal could not say so.
_REPLACE = b"replace"


def serve(
    make_runner: Callable[[], Runner], sockets: list[socket.socket], processes: int
) -> None:
    """Serve on ``sockets`` with ``processes`` processes until stopped.

    :param make_runner: called in each serving process, inside its running
        loop (see :func:`~sprockets_http.runner.serve_until_stopped`)
    :param sockets: the bound listening sockets
    :param processes: 1 serves in this process; more start a
        :class:`Supervisor` with that many workers
    :raises SystemExit: with the exit status when it is not 0

    .. versionadded:: 3.0.0
    """
    if processes == 1:
        serve_until_stopped(make_runner, sockets)
        return
    status = Supervisor(make_runner, sockets, processes).run()
    if status:
        raise SystemExit(status)


@dataclasses.dataclass
class _Worker:
    """What the parent knows about one worker process."""

    pid: int
    channel: socket.socket  # the parent's end of the socket pair
    started: float
    replaces: int | None  # the worker to stop once this one is ready
    ready: bool = False
    received: bytes = b""
    stopping: bool = False
    kill_at: float | None = None


@dataclasses.dataclass
class _PendingStart:
    """A worker to start later, after a back-off."""

    at: float
    replaces: int | None
    dead: int  # the worker that died, for the log line


class Supervisor:
    """The parent of several worker processes.

    :param make_runner: called in each worker, inside its running loop
    :param sockets: the bound listening sockets every worker accepts on
    :param workers: how many workers to run; at least 2
    :raises ValueError: when ``workers`` is less than 2

    :meth:`run` blocks until the service stopped.  See the module
    documentation for signals, replacement and exit statuses.

    .. versionadded:: 3.0.0
    """

    def __init__(
        self,
        make_runner: Callable[[], Runner],
        sockets: list[socket.socket],
        workers: int,
    ) -> None:
        if workers < 2:
            raise ValueError(f"a supervisor runs 2 workers or more, not {workers}")
        self._make_runner = make_runner
        self._sockets = sockets
        self._wanted = workers
        self._workers: dict[int, _Worker] = {}
        self._pending: list[_PendingStart] = []
        self._to_restart: list[int] = []
        self._replacing: int | None = None  # the old worker of a rolling restart
        self._quick_deaths = 0
        self._budget: float | None = None
        self._announced = False
        self._stopping = False
        self._exit_status = 0
        self._selector = selectors.DefaultSelector()
        self._wakeup_read, self._wakeup_write = os.pipe()

    def run(self) -> int:
        """Start the workers and watch them until the service stopped.

        :returns: the exit status (see the module documentation)
        """
        if threading.active_count() > 1:
            LOGGER.warning(
                "forking workers while %d threads run: only the forking one "
                "exists in the workers",
                threading.active_count(),
            )
        pid = os.getpid()
        LOGGER.info("supervisor starting %d workers (pid %d)", self._wanted, pid)
        previous = self._install_signal_handlers()
        try:
            for _ in range(self._wanted):
                self._start_worker(replaces=None)
            while self._workers or not self._stopping:
                self._wait_and_dispatch()
        finally:
            self._restore_signal_handlers(previous)
            self._selector.close()
            os.close(self._wakeup_read)
            os.close(self._wakeup_write)
            for sock in self._sockets:
                sock.close()
        LOGGER.info(
            "supervisor exiting with status %d (pid %d)", self._exit_status, pid
        )
        return self._exit_status

    # -- the parent's waiting --------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        # The C-level handler writes each signal's number to the wakeup pipe,
        # which wakes select(); the Python-level handlers have nothing to do.
        for fd in (self._wakeup_read, self._wakeup_write):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wakeup_write)
        self._selector.register(
            self._wakeup_read, selectors.EVENT_READ, self._read_signals
        )
        return {signo: signal.signal(signo, _ignore) for signo in _HANDLED_SIGNALS}

    def _restore_signal_handlers(self, previous: dict[int, Any]) -> None:
        signal.set_wakeup_fd(-1)
        for signo, handler in previous.items():
            signal.signal(signo, handler)

    def _wait_and_dispatch(self) -> None:
        for key, _ in self._selector.select(self._next_timeout()):
            key.data()
        now = time.monotonic()
        for pending in [p for p in self._pending if p.at <= now]:
            self._pending.remove(pending)
            self._start_worker(pending.replaces, instead_of=pending.dead)
        for worker in list(self._workers.values()):
            if worker.kill_at is not None and worker.kill_at <= now:
                self._kill(worker, "still running after its stop budget")

    def _next_timeout(self) -> float | None:
        moments = [p.at for p in self._pending]
        moments += [w.kill_at for w in self._workers.values() if w.kill_at]
        if not moments:
            return None
        return max(0.0, min(moments) - time.monotonic())

    def _read_signals(self) -> None:
        try:
            received = os.read(self._wakeup_read, 512)
        except BlockingIOError:
            return
        for signo in received:
            self._on_signal(signal.Signals(signo))

    def _on_signal(self, signo: signal.Signals) -> None:
        if signo == signal.SIGCHLD:
            self._reap()
        elif signo in _STOP_SIGNALS:
            self._on_stop_signal(signo)
        elif self._stopping:
            LOGGER.info("received %s while stopping, ignored", signo.name)
        elif signo == signal.SIGHUP:
            self._begin_rolling_restart()
        elif signo == signal.SIGTTIN:
            self._add_worker()
        elif signo == signal.SIGTTOU:
            self._remove_worker()

    # -- starting workers --------------------------------------------------

    def _start_worker(
        self, replaces: int | None, instead_of: int | None = None
    ) -> None:
        parent_end, worker_end = socket.socketpair()
        # Until the new worker has its own handlers, a signal to it would
        # run the parent's and write to the parent's wakeup pipe.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED_SIGNALS)
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                parent_end.close()
                self._forget_parent_state()
                status = _serve_as_worker(
                    self._make_runner, self._sockets, worker_end, mask
                )
            except BaseException:
                LOGGER.exception("worker failed (pid %d)", os.getpid())
            finally:
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        worker_end.close()
        worker = _Worker(pid, parent_end, time.monotonic(), replaces)
        self._workers[pid] = worker
        self._selector.register(
            parent_end, selectors.EVENT_READ, functools.partial(self._read, worker)
        )
        if instead_of is not None:
            LOGGER.info("worker %d started in place of worker %d", pid, instead_of)
        elif replaces is not None:
            LOGGER.info("worker %d started to replace worker %d", pid, replaces)
        else:
            LOGGER.info("worker %d started", pid)

    def _forget_parent_state(self) -> None:
        """In a new worker: drop what only the parent may hold."""
        signal.set_wakeup_fd(-1)
        for signo in _HANDLED_SIGNALS:
            signal.signal(signo, signal.SIG_DFL)
        self._selector.close()
        os.close(self._wakeup_read)
        os.close(self._wakeup_write)
        # Holding another worker's parent end would hide the parent's death
        # from that worker.
        for worker in self._workers.values():
            worker.channel.close()

    def _read(self, worker: _Worker) -> None:
        if worker.channel.fileno() == -1:
            return  # reaped while handling an earlier event of this round
        try:
            data = worker.channel.recv(512)
        except OSError:
            data = b""
        if not data:
            self._close_channel(worker)
            self._reap()
            return
        worker.received += data
        while b"\n" in worker.received:
            line, worker.received = worker.received.split(b"\n", 1)
            name, _, value = line.partition(b" ")
            if name == _READY and not worker.ready:
                self._on_ready(worker, float(value))
            elif name == _STOP:
                self._on_stop_asked(worker)

    def _on_ready(self, worker: _Worker, budget: float) -> None:
        worker.ready = True
        self._budget = max(budget, self._budget or 0.0)
        LOGGER.info("worker %d ready", worker.pid)
        if worker.replaces is not None:
            old = self._workers.get(worker.replaces)
            if old is not None and not old.stopping:
                self._stop(old, signal.SIGTERM, replacing=True)
            if worker.replaces == self._replacing:
                self._replacing = None
                self._continue_rolling_restart()
            worker.replaces = None
        if self._stopping or self._announced:
            return
        if sum(w.ready for w in self._workers.values()) >= self._wanted:
            self._announced = True
            LOGGER.info(
                "all %d workers ready (supervisor pid %d)", self._wanted, os.getpid()
            )
            _systemd.notify("READY=1")

    def _on_stop_asked(self, worker: _Worker) -> None:
        # The worker stops itself; the others are told as on SIGTERM.
        self._mark_stopping(worker)
        if self._stopping:
            return
        if worker.ready:
            LOGGER.warning(
                "worker %d: the application asked to stop, stopping the service",
                worker.pid,
            )
        else:
            LOGGER.error(
                "worker %d: the application asked to stop before it was ready, "
                "stopping the service",
                worker.pid,
            )
        self._begin_stop(signal.SIGTERM, 0)

    # -- workers that exit -------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self._workers.pop(pid, None)
            if worker is not None:
                self._on_exit(worker, os.waitstatus_to_exitcode(wait_status))

    def _close_channel(self, worker: _Worker) -> None:
        if worker.channel.fileno() != -1:
            self._selector.unregister(worker.channel)
            worker.channel.close()

    def _on_exit(self, worker: _Worker, status: int) -> None:
        self._close_channel(worker)
        LOGGER.info("worker %d exited with status %d", worker.pid, status)
        if self._stopping:
            if status and not self._exit_status:
                self._exit_status = 1
            return
        if worker.stopping:
            return
        if status == EXIT_START_FAILED and not worker.ready:
            LOGGER.critical(
                "worker %d failed to start, stopping the service", worker.pid
            )
            self._begin_stop(signal.SIGTERM, EXIT_START_FAILED)
            return
        if self._being_replaced(worker.pid):
            return  # its replacement is on its way already
        delay = self._backoff(worker)
        LOGGER.warning(
            "worker %d exited unexpectedly, replacing it in %.1f s", worker.pid, delay
        )
        self._pending.append(
            _PendingStart(time.monotonic() + delay, worker.replaces, worker.pid)
        )

    def _being_replaced(self, pid: int) -> bool:
        return any(w.replaces == pid for w in self._workers.values()) or any(
            p.replaces == pid for p in self._pending
        )

    def _backoff(self, worker: _Worker) -> float:
        if time.monotonic() - worker.started >= STABLE_AFTER:
            self._quick_deaths = 0
            return 0.0
        self._quick_deaths += 1
        return min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** (self._quick_deaths - 1))

    # -- stopping ----------------------------------------------------------

    def _on_stop_signal(self, signo: signal.Signals) -> None:
        if self._stopping:
            LOGGER.warning("received %s again, killing the workers", signo.name)
            for worker in list(self._workers.values()):
                self._kill(worker, f"second {signo.name}")
            return
        LOGGER.info(
            "received %s, stopping %d workers (supervisor pid %d)",
            signo.name,
            len(self._workers),
            os.getpid(),
        )
        self._begin_stop(signo, 0)

    def _begin_stop(self, signo: signal.Signals, exit_status: int) -> None:
        self._stopping = True
        self._exit_status = exit_status
        self._pending.clear()
        self._to_restart.clear()
        _systemd.notify("STOPPING=1")
        for worker in self._workers.values():
            if not worker.stopping:
                self._stop(worker, signo)

    def _stop(
        self, worker: _Worker, signo: signal.Signals, replacing: bool = False
    ) -> None:
        self._mark_stopping(worker)
        if replacing:
            LOGGER.info("stopping worker %d: replaced", worker.pid)
            try:
                worker.channel.sendall(_REPLACE + b"\n")
                return
            except OSError:
                pass  # it is exiting already; the signal does no harm
        LOGGER.info("stopping worker %d with %s", worker.pid, signo.name)
        _signal_worker(worker.pid, signo)

    def _mark_stopping(self, worker: _Worker) -> None:
        budget = self._budget if self._budget is not None else UNREADY_BUDGET
        worker.stopping = True
        worker.kill_at = time.monotonic() + budget + KILL_MARGIN

    def _kill(self, worker: _Worker, reason: str) -> None:
        LOGGER.error("killing worker %d: %s", worker.pid, reason)
        worker.kill_at = None
        _signal_worker(worker.pid, signal.SIGKILL)
        if self._stopping and self._exit_status == 0:
            self._exit_status = EXIT_WORKERS_KILLED

    # -- changing the workers while serving --------------------------------

    def _begin_rolling_restart(self) -> None:
        if self._to_restart or self._replacing is not None:
            LOGGER.warning("received SIGHUP during a rolling restart, ignored")
            return
        self._to_restart = [w.pid for w in self._workers.values() if not w.stopping]
        LOGGER.info(
            "received SIGHUP, restarting %d workers one at a time",
            len(self._to_restart),
        )
        self._continue_rolling_restart()

    def _continue_rolling_restart(self) -> None:
        while self._to_restart:
            old = self._workers.get(self._to_restart.pop(0))
            if old is not None and not old.stopping:
                self._replacing = old.pid
                self._start_worker(replaces=old.pid)
                return
        LOGGER.info("rolling restart finished")

    def _add_worker(self) -> None:
        self._wanted += 1
        LOGGER.info("received SIGTTIN, now %d workers", self._wanted)
        self._start_worker(replaces=None)

    def _remove_worker(self) -> None:
        if self._wanted <= 1:
            LOGGER.warning("received SIGTTOU, keeping the last worker")
            return
        self._wanted -= 1
        LOGGER.info("received SIGTTOU, now %d workers", self._wanted)
        for pending in reversed(self._pending):
            if pending.replaces is None:  # not part of a rolling restart
                self._pending.remove(pending)
                return
        candidates = [
            w
            for w in self._workers.values()
            if not w.stopping and w.pid != self._replacing
        ]
        self._stop(
            max(candidates, key=lambda w: w.started), signal.SIGTERM, replacing=True
        )


def _ignore(signo: int, frame: object) -> None:
    """A Python-level handler, so that the wakeup pipe hears the signal."""


def _signal_worker(pid: int, signo: signal.Signals) -> None:
    # ProcessLookupError: it exited already, and the parent reaps it next.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signo)


def _serve_as_worker(
    make_runner: Callable[[], Runner],
    sockets: list[socket.socket],
    channel: socket.socket,
    mask: set[int | signal.Signals],
) -> int:
    """A worker's whole life, after the fork; returns its exit status.

    :param mask: the signal mask to restore once the worker's own signal
        handlers are in place
    """
    # Only the parent talks to systemd.
    os.environ.pop("NOTIFY_SOCKET", None)
    # A stop signal that arrives before the runner handles signals itself
    # is remembered and handed to the runner once it does.
    early_stops: list[int] = []
    for signo in _STOP_SIGNALS:
        signal.signal(signo, lambda signo, frame: early_stops.append(signo))
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def make_worker_runner() -> Runner:
        runner = make_runner()
        runner.on_stop = functools.partial(_tell_parent_of_stop, channel)
        loop = asyncio.get_event_loop()  # made by serve_until_stopped, not running
        loop.add_reader(channel, _watch_parent, runner, channel, loop)
        loop.call_soon(_replay_early_stops, runner, early_stops)
        return runner

    def report_ready(runner: Runner) -> None:
        # OSError: the parent is gone, and _watch_parent stops this worker.
        with contextlib.suppress(OSError):
            channel.sendall(_READY + f" {runner.stop_budget}\n".encode())

    try:
        serve_until_stopped(make_worker_runner, sockets, report_ready)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 1
    return 0


def _tell_parent_of_stop(channel: socket.socket, signo: int | None) -> None:
    if signo is None:  # the application asked, not a signal
        # OSError: the parent is gone; this worker stops anyway.
        with contextlib.suppress(OSError):
            channel.sendall(_STOP + b"\n")


def _replay_early_stops(runner: Runner, early_stops: list[int]) -> None:
    # Runs once Runner.serve handles the stop signals through the loop.
    for signo in early_stops:
        runner.request_stop(signo)


def _watch_parent(
    runner: Runner, channel: socket.socket, loop: asyncio.AbstractEventLoop
) -> None:
    try:
        data = channel.recv(512)
    except OSError:
        data = b""
    if data:
        # One short line at a time, far below a socket pair's buffer.
        if _REPLACE in data.split(b"\n"):
            runner.request_stop(signal.SIGTERM, replacing=True)
        return
    loop.remove_reader(channel)
    LOGGER.warning("supervisor is gone, stopping (pid %d)", os.getpid())
    runner.request_stop(signal.SIGTERM)


use_for_several_processes(serve)
