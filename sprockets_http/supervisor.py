"""Several worker processes sharing one port, watched by a supervising parent.

:func:`serve` runs one process when asked for one, else a
:class:`Supervisor`: the parent process binds the port once, forks the
workers, and then only watches them; it never serves a request and never
creates an event loop or a thread.  Each worker creates the application in
its own asyncio loop and runs the whole lifecycle of
:class:`~sprockets_http.runner.Runner`.  Parent and worker talk over a
socket pair (see :mod:`sprockets_http._channel`).

Every worker tells the parent when it is ready (``before_run`` done and
listening).  Once all are, the parent logs one line and, when
``NOTIFY_SOCKET`` is set, tells systemd ``READY=1``.

Signals to the parent:

SIGTERM, SIGINT
    The parent closes its copy of the listening sockets, so that once the
    workers stop accepting a new connection is refused at once (clients
    and load balancers fail over), and sends SIGTERM to every worker, which
    stops gracefully (see :mod:`sprockets_http.runner`); systemd is told
    ``STOPPING=1``.  The parent exits once every worker has.  A second
    SIGTERM or SIGINT kills the workers with SIGKILL.  Workers ignore
    SIGINT: Ctrl-C in a terminal signals the whole process group, and the
    parent's SIGTERM is the one they obey, so they drain as on a single
    SIGTERM.
SIGHUP
    Replaces every worker, one at a time: a new worker is started, and once
    it is ready the old one is *replaced*: it stops accepting and drains
    its requests, without ``shutdown_delay`` and without failing its health
    check, since the service as a whole stays up, and closes its WebSockets
    with 1012 (Service Restart), so that their clients reconnect at once to
    another worker.  The port never stops accepting.  Started by
    :func:`sprockets_http.run` (or ``python -m sprockets_http``), the parent
    first checks the code on disk and re-executes itself, so that the new
    workers run the code now on disk (see :mod:`sprockets_http.reload`);
    otherwise they are forked from the code the parent loaded.  A new
    worker that fails before it is ready ends the restart: the workers it
    was to replace keep serving.  systemd is told ``RELOADING=1``, then
    ``READY=1`` when the restart is over.
SIGTTIN, SIGTTOU
    One worker more, one worker less (never fewer than one); the worker
    removed is replaced as on SIGHUP, without a successor.

Workers are also replaced, as on SIGHUP, after ``max_requests`` requests
(see :mod:`sprockets_http.recycle`).  A worker whose event loop has been
blocked for ``worker_timeout`` seconds gets the stacks of its threads
logged, is killed with SIGKILL and replaced (see
:mod:`sprockets_http.heartbeat`).

A worker that dies unexpectedly is replaced at once when it had been ready.
Only when its place keeps failing is there a back-off, per place: a worker
that dies before it is ready, or a second time in a row within
:data:`STABLE_AFTER` seconds of starting, is replaced after a delay that
doubles with each such death in a row, from :data:`FIRST_BACKOFF` up to
:data:`MAX_BACKOFF`.  A worker that exits with
:data:`~sprockets_http.runner.EXIT_START_FAILED` before it was ready, while
the service starts, ends the service: the parent stops the other workers
and exits with that status.  Later, such a failure is retried with the
back-off (or ends a restart, as above).

Each worker's exit is logged once, with its pid, its exit status or
signal, and its cause: ``stopped`` (the service stops), ``replaced``
(SIGHUP), ``recycled`` (``max_requests``), ``removed`` (SIGTTOU), ``timed
out`` (``worker_timeout``), ``failed to start`` or ``crashed`` (anything
else), e.g. ``worker 4242 was killed by SIGKILL (timed out), replacing it
at once``.

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
    a worker failed before it was ready while the service started;
:data:`EXIT_WORKERS_KILLED` (137)
    the parent had to kill a worker with SIGKILL while stopping (a second
    signal, or a worker over its budget).

Workers notice when the parent dies, even of SIGKILL: each watches its end
of the socket pair whose other end only the parent holds, and stops
gracefully when it reads end-of-file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from sprockets_http import _channel, _systemd, _worker, heartbeat, recycle, reload
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
WorkerObserver = Callable[[str, int, str], None]
"""``observer(event, pid, cause)``, called in the parent when a worker
``started`` (cause ``start``, or why the worker it replaces goes:
``crashed``, ``timed out``, ``replaced`` by SIGHUP, ``recycled``) or
``exited`` (the cause its exit is logged with: ``stopped``, ``replaced``,
``recycled``, ``removed``, ``timed out``, ``crashed``, ``failed to start``).

.. versionadded:: 3.0.0
"""

_observers: list[WorkerObserver] = []

# Workers stopped on purpose while the service stays up: not replaced.
_RETIRED = ("replaced", "recycled", "removed")


@dataclasses.dataclass(frozen=True)
class WorkerOptions:
    """How a supervisor looks after its workers.

    :param worker_timeout: seconds a ready worker's event loop may be
        blocked before it is killed and replaced; 0 never (see
        :mod:`sprockets_http.heartbeat`)
    :param max_requests: requests after which a worker is replaced; 0
        never (see :mod:`sprockets_http.recycle`)
    :param max_requests_jitter: a random 0 to this many more, per worker
    :param reexec: on SIGHUP, check the code on disk and re-execute the
        command line (see :mod:`sprockets_http.reload`), instead of forking
        new workers from the code loaded

    .. versionadded:: 3.0.0
    """

    worker_timeout: float = 30.0
    max_requests: int = 0
    max_requests_jitter: int = 0
    reexec: bool = False


def observe_workers(observer: WorkerObserver) -> None:
    """Have ``observer`` called on each start and exit of a worker.

    :func:`sprockets_http.run` has :mod:`sprockets_http.metrics` count them
    this way.  An observer that raises is logged and does not stop the
    parent.

    .. versionadded:: 3.0.0
    """
    if observer not in _observers:
        _observers.append(observer)


def _tell_observers(event: str, pid: int, cause: str) -> None:
    for observer in _observers:
        try:
            observer(event, pid, cause)
        except Exception:
            LOGGER.exception("a worker observer failed")


def serve(
    make_runner: Callable[[], Runner],
    sockets: list[socket.socket],
    processes: int,
    options: WorkerOptions | None = None,
) -> None:
    """Serve on ``sockets`` with ``processes`` processes until stopped.

    :param make_runner: called in each serving process, inside its running
        loop (see :func:`~sprockets_http.runner.serve_until_stopped`)
    :param sockets: the bound listening sockets
    :param processes: 1 serves in this process (watched by
        :func:`~sprockets_http.heartbeat.serve_watched` unless
        ``worker_timeout`` is 0); more start a :class:`Supervisor` with that
        many workers.  A supervisor that re-executed itself carries on with
        as many workers as it had.
    :param options: how to look after the workers; default
        :class:`WorkerOptions`
    :raises SystemExit: with the exit status when it is not 0

    .. versionadded:: 3.0.0
    """
    options = options or WorkerOptions()
    handover = reload.take_handover()
    if handover is None and processes == 1:
        if options.worker_timeout:
            heartbeat.serve_watched(make_runner, sockets, options.worker_timeout)
        else:
            serve_until_stopped(make_runner, sockets)
        return
    status = Supervisor(make_runner, sockets, processes, options, handover).run()
    if status:
        raise SystemExit(status)


@dataclasses.dataclass
class _Worker:
    """What the parent knows about one worker process."""

    pid: int
    channel: socket.socket  # the parent's end of the socket pair
    started: float
    replaces: int | None = None  # the worker to retire once this one is ready
    retires_as: str = "replaced"  # the cause logged for that worker
    quick_deaths: int = 0  # of its place, in a row; see Supervisor._backoff
    ready: bool = False
    lines: _channel.Lines = dataclasses.field(default_factory=_channel.Lines)
    stopping: bool = False
    cause: str | None = None  # why it stops, once it does
    kill_at: float | None = None
    last_beat: float = 0.0
    stacks: bytearray | None = None  # while its stacks are being dumped


@dataclasses.dataclass
class _PendingStart:
    """A worker to start later, after a back-off."""

    at: float
    dead: _Worker  # the worker it takes the place of


class Supervisor:
    """The parent of several worker processes.

    :param make_runner: called in each worker, inside its running loop
    :param sockets: the bound listening sockets every worker accepts on
    :param workers: how many workers to run; at least 2
    :param options: how to look after them; default :class:`WorkerOptions`
    :param handover: what the supervisor's former image handed over, when
        it re-executed itself (then ``workers`` is ignored)
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
        options: WorkerOptions | None = None,
        handover: reload.Handover | None = None,
    ) -> None:
        if workers < 2 and handover is None:
            raise ValueError(f"a supervisor runs 2 workers or more, not {workers}")
        self._make_runner = make_runner
        self._sockets = sockets
        self._options = options or WorkerOptions()
        self._handover = handover
        self._wanted = workers
        self._workers: dict[int, _Worker] = {}
        self._pending: list[_PendingStart] = []
        self._to_restart: list[int] = []
        self._replacing: int | None = None  # the old worker of a rolling restart
        self._check: reload.Check | None = None
        self._budget: float | None = None
        self._announced = False
        self._stopping = False
        self._exit_status = 0
        self._last_watch = time.monotonic()
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
        previous = self._install_signal_handlers()
        try:
            if self._handover is not None:
                self._adopt(self._handover)
            else:
                LOGGER.info(
                    "supervisor starting %d workers (pid %d)", self._wanted, pid
                )
                for _ in range(self._wanted):
                    self._start_worker()
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
        previous: dict[int, Any] = {
            signo: signal.signal(signo, _ignore) for signo in _HANDLED_SIGNALS
        }
        # A re-executed supervisor finds them blocked (see reload.reexec).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED_SIGNALS)
        return previous

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
            self._start_worker(instead_of=pending.dead)
        for worker in list(self._workers.values()):
            if worker.kill_at is not None and worker.kill_at <= now:
                if worker.stacks is not None:
                    self._kill_silent(worker)
                else:
                    self._kill(worker, "still running after its stop budget")
        self._watch_heartbeats(now)
        if self._check is not None and self._check.deadline <= now:
            LOGGER.error(
                "the check of the code on disk took longer than %.0f s, killing it",
                reload.CHECK_TIMEOUT,
            )
            _signal_worker(self._check.pid, signal.SIGKILL)
            self._check = dataclasses.replace(self._check, deadline=math.inf)

    def _next_timeout(self) -> float | None:
        moments = [p.at for p in self._pending]
        moments += [w.kill_at for w in self._workers.values() if w.kill_at]
        if self._check is not None:
            moments.append(self._check.deadline)
        if self._options.worker_timeout:
            moments.append(self._last_watch + self._options.worker_timeout / 4)
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
            self._on_sighup()
        elif signo == signal.SIGTTIN:
            self._add_worker()
        elif signo == signal.SIGTTOU:
            self._remove_worker()

    # -- starting workers --------------------------------------------------

    def _start_worker(
        self,
        replaces: int | None = None,
        retires_as: str = "replaced",
        instead_of: _Worker | None = None,
    ) -> None:
        parent_end, worker_end = socket.socketpair()
        options = self._options
        limit = recycle.request_limit(options.max_requests, options.max_requests_jitter)
        # Until the new worker has its own handlers, a signal to it would
        # run the parent's and write to the parent's wakeup pipe.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED_SIGNALS)
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                parent_end.close()
                self._forget_parent_state()
                status = _worker.serve(
                    self._make_runner,
                    self._sockets,
                    worker_end,
                    mask,
                    options.worker_timeout,
                    limit,
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
        worker = _Worker(pid, parent_end, time.monotonic(), replaces, retires_as)
        if instead_of is not None:
            # It takes the dead worker's place, and its part in a restart.
            worker.quick_deaths = instead_of.quick_deaths
            worker.replaces = instead_of.replaces
            worker.retires_as = instead_of.retires_as
        self._register(worker)
        if instead_of is not None:
            LOGGER.info("worker %d started in place of worker %d", pid, instead_of.pid)
            _tell_observers("started", pid, instead_of.cause or "crashed")
        elif replaces is not None:
            LOGGER.info("worker %d started to replace worker %d", pid, replaces)
            _tell_observers("started", pid, retires_as)
        else:
            LOGGER.info("worker %d started", pid)
            _tell_observers("started", pid, "start")

    def _register(self, worker: _Worker) -> None:
        self._workers[worker.pid] = worker
        self._selector.register(
            worker.channel, selectors.EVENT_READ, functools.partial(self._read, worker)
        )

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
            data = worker.channel.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close_channel(worker)
            self._reap()
            return
        if worker.stacks is not None:
            worker.stacks += data
            return
        for name, value in worker.lines.feed(data):
            if name == _channel.BEAT:
                worker.last_beat = time.monotonic()
            elif name == _channel.READY and not worker.ready:
                self._on_ready(worker, float(value))
            elif name == _channel.STOP:
                self._on_stop_asked(worker)
            elif name == _channel.RECYCLE:
                self._on_recycle(worker, value)

    def _on_ready(self, worker: _Worker, budget: float) -> None:
        worker.ready = True
        worker.last_beat = time.monotonic()
        self._budget = max(budget, self._budget or 0.0)
        LOGGER.info("worker %d ready", worker.pid)
        if worker.replaces is not None:
            old = self._workers.get(worker.replaces)
            if old is not None and not old.stopping:
                self._retire(old, worker.retires_as)
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
        self._mark_stopping(worker, "stopped")
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
        self._begin_stop(0)

    def _on_recycle(self, worker: _Worker, served: str) -> None:
        if self._stopping or worker.stopping or self._being_replaced(worker.pid):
            return
        LOGGER.info("worker %d served %s requests, replacing it", worker.pid, served)
        self._start_worker(replaces=worker.pid, retires_as="recycled")

    # -- workers that exit -------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            status = os.waitstatus_to_exitcode(wait_status)
            worker = self._workers.pop(pid, None)
            if worker is not None:
                self._on_exit(worker, status)
            elif self._check is not None and pid == self._check.pid:
                self._on_check_done(status)

    def _close_channel(self, worker: _Worker) -> None:
        if worker.channel.fileno() != -1:
            self._selector.unregister(worker.channel)
            worker.channel.close()

    def _on_exit(self, worker: _Worker, status: int) -> None:
        self._close_channel(worker)
        how = _how_it_ended(status)
        if worker.cause is None and status == EXIT_START_FAILED and not worker.ready:
            _tell_observers("exited", worker.pid, "failed to start")
        else:
            _tell_observers("exited", worker.pid, worker.cause or "crashed")
        if self._stopping:
            if status and not self._exit_status:
                self._exit_status = 1
            LOGGER.info("worker %d %s (%s)", worker.pid, how, worker.cause or "stopped")
        elif worker.cause in _RETIRED:
            level = logging.WARNING if status else logging.INFO
            LOGGER.log(level, "worker %d %s (%s)", worker.pid, how, worker.cause)
        elif status == EXIT_START_FAILED and not worker.ready:
            self._on_start_failure(worker, how)
        elif self._being_replaced(worker.pid):  # its successor is on its way
            LOGGER.warning(
                "worker %d %s (%s)", worker.pid, how, worker.cause or "crashed"
            )
        else:
            delay = self._backoff(worker)
            LOGGER.warning(
                "worker %d %s (%s), replacing it %s",
                worker.pid,
                how,
                worker.cause or "crashed",
                f"in {delay:.1f} s" if delay else "at once",
            )
            self._pending.append(_PendingStart(time.monotonic() + delay, worker))

    def _on_start_failure(self, worker: _Worker, how: str) -> None:
        if not self._announced:
            LOGGER.critical(
                "worker %d %s (failed to start), stopping the service", worker.pid, how
            )
            self._begin_stop(EXIT_START_FAILED)
        elif worker.replaces is not None:
            LOGGER.error(
                "worker %d %s (failed to start): worker %d keeps serving%s",
                worker.pid,
                how,
                worker.replaces,
                ", the restart stops there" if self._to_restart else "",
            )
            if worker.replaces == self._replacing:
                self._replacing = None
                self._to_restart.clear()
                _systemd.notify("READY=1")
        else:
            delay = self._backoff(worker)
            LOGGER.error(
                "worker %d %s (failed to start), trying again in %.1f s",
                worker.pid,
                how,
                delay,
            )
            self._pending.append(_PendingStart(time.monotonic() + delay, worker))

    def _being_replaced(self, pid: int) -> bool:
        return any(w.replaces == pid for w in self._workers.values()) or any(
            p.dead.replaces == pid for p in self._pending
        )

    def _backoff(self, worker: _Worker) -> float:
        """Seconds before replacing ``worker``; counts its place's quick deaths."""
        if worker.ready and time.monotonic() - worker.started >= STABLE_AFTER:
            worker.quick_deaths = 0
            return 0.0
        worker.quick_deaths += 1
        # A worker that was ready is replaced at once the first time.
        steps = worker.quick_deaths - 1 if worker.ready else worker.quick_deaths
        if not steps:
            return 0.0
        return min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** (steps - 1))

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
        self._begin_stop(0)

    def _begin_stop(self, exit_status: int) -> None:
        self._stopping = True
        self._exit_status = exit_status
        self._pending.clear()
        self._to_restart.clear()
        if self._check is not None:
            _signal_worker(self._check.pid, signal.SIGKILL)
        # Once the workers stop listening, connections must be refused, not
        # queued on a socket nobody accepts on.
        for sock in self._sockets:
            sock.close()
        _systemd.notify("STOPPING=1")
        for worker in self._workers.values():
            if not worker.stopping:
                self._mark_stopping(worker, "stopped")
                LOGGER.info("stopping worker %d with SIGTERM", worker.pid)
                _signal_worker(worker.pid, signal.SIGTERM)

    def _retire(self, worker: _Worker, cause: str) -> None:
        """Stop ``worker`` while the service stays up (see ``replace``)."""
        self._mark_stopping(worker, cause)
        LOGGER.info("stopping worker %d (%s)", worker.pid, cause)
        _channel.send(worker.channel, _channel.REPLACE)

    def _mark_stopping(self, worker: _Worker, cause: str) -> None:
        budget = self._budget if self._budget is not None else UNREADY_BUDGET
        worker.stopping = True
        worker.cause = cause
        worker.kill_at = time.monotonic() + budget + KILL_MARGIN

    def _kill(self, worker: _Worker, reason: str | None) -> None:
        """SIGKILL ``worker``; ``reason`` is logged unless it is :data:`None`."""
        if reason is not None:
            LOGGER.error("killing worker %d: %s", worker.pid, reason)
        worker.kill_at = None
        _signal_worker(worker.pid, signal.SIGKILL)
        if self._stopping and self._exit_status == 0:
            self._exit_status = EXIT_WORKERS_KILLED

    # -- blocked workers ---------------------------------------------------

    def _watch_heartbeats(self, now: float) -> None:
        timeout = self._options.worker_timeout
        if not timeout:
            return
        if now - self._last_watch > timeout / 2:
            # This process did not run for a while (a frozen container):
            # the workers' silence proves nothing.
            for worker in self._workers.values():
                worker.last_beat = now
        self._last_watch = now
        for worker in list(self._workers.values()):
            silent = now - worker.last_beat
            if worker.ready and not worker.stopping and silent >= timeout:
                self._dump_stacks(worker)

    def _dump_stacks(self, worker: _Worker) -> None:
        worker.stopping = True
        worker.cause = "timed out"
        worker.stacks = bytearray()
        worker.kill_at = time.monotonic() + heartbeat.DUMP_WAIT
        _signal_worker(worker.pid, heartbeat.DUMP_SIGNAL)

    def _kill_silent(self, worker: _Worker) -> None:
        assert worker.stacks is not None
        worker.channel.setblocking(False)
        with contextlib.suppress(OSError):
            while chunk := worker.channel.recv(65536):
                worker.stacks += chunk
        stacks = worker.stacks.decode("utf-8", "replace") or "(none received)"
        worker.stacks = None
        heartbeat.log_stacks(
            LOGGER,
            logging.ERROR,
            stacks,
            "worker %d sent no heartbeat for %.1f s (worker_timeout): its event "
            "loop is blocked, killing it. Its threads, most recent call first:",
            worker.pid,
            time.monotonic() - worker.last_beat,
        )
        self._kill(worker, None)  # the record above says so

    # -- changing the workers while serving --------------------------------

    def _on_sighup(self) -> None:
        if self._to_restart or self._replacing is not None or self._check:
            LOGGER.warning("received SIGHUP during a restart, ignored")
            return
        _systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        if self._options.reexec and reload.can_reexec():
            try:
                self._check = reload.start_check()
            except OSError as error:
                LOGGER.error("cannot check the code on disk: %s", error)
            else:
                LOGGER.info(
                    "received SIGHUP, checking the code on disk (check pid %d)",
                    self._check.pid,
                )
                return
        self._restart(
            "received SIGHUP", [w.pid for w in self._workers.values() if not w.stopping]
        )

    def _on_check_done(self, status: int) -> None:
        self._check = None
        if self._stopping:
            return
        if status:
            LOGGER.error(
                "the code on disk failed its check (it %s): the workers keep "
                "running the code they run",
                _how_it_ended(status),
            )
            _systemd.notify("READY=1")
            return
        LOGGER.info(
            "the code on disk passed its check, re-executing the supervisor (pid %d)",
            os.getpid(),
        )
        now = time.monotonic()
        handover = reload.Handover(
            self._wanted,
            self._budget,
            [
                reload.HandedWorker(
                    w.pid,
                    w.channel.fileno(),
                    w.ready,
                    w.cause,
                    None if w.kill_at is None else max(0.0, w.kill_at - now),
                )
                for w in self._workers.values()
            ],
        )
        error = reload.reexec(self._sockets, handover, _HANDLED_SIGNALS)
        LOGGER.error(
            "could not re-execute the supervisor: %s; the workers keep running "
            "the code they run",
            error,
        )
        _systemd.notify("READY=1")

    def _adopt(self, handover: reload.Handover) -> None:
        """In a re-executed supervisor: carry on with the former image's workers."""
        now = time.monotonic()
        self._wanted = handover.wanted
        self._budget = handover.budget
        self._announced = True
        for handed in handover.workers:
            worker = _Worker(handed.pid, socket.socket(fileno=handed.channel), now)
            worker.ready = handed.ready
            worker.last_beat = now
            if handed.cause is not None:
                worker.stopping = True
                worker.cause = handed.cause
                worker.kill_at = now + (handed.kill_in or 0.0)
            self._register(worker)
        self._reap()  # those that exited while the image changed
        serving = [w.pid for w in self._workers.values() if not w.stopping]
        for _ in range(self._wanted - len(serving)):
            self._start_worker()
        self._restart(
            f"supervisor re-executed with the code on disk (pid {os.getpid()})",
            serving,
        )

    def _restart(self, why: str, pids: list[int]) -> None:
        self._to_restart = pids
        LOGGER.info("%s, restarting %d workers one at a time", why, len(pids))
        self._continue_rolling_restart()

    def _continue_rolling_restart(self) -> None:
        while self._to_restart:
            old = self._workers.get(self._to_restart.pop(0))
            if (
                old is not None
                and not old.stopping
                and not self._being_replaced(old.pid)
            ):
                self._replacing = old.pid
                self._start_worker(replaces=old.pid)
                return
        LOGGER.info("rolling restart finished")
        _systemd.notify("READY=1")

    def _add_worker(self) -> None:
        self._wanted += 1
        LOGGER.info("received SIGTTIN, now %d workers", self._wanted)
        self._start_worker()

    def _remove_worker(self) -> None:
        if self._wanted <= 1:
            LOGGER.warning("received SIGTTOU, keeping the last worker")
            return
        self._wanted -= 1
        LOGGER.info("received SIGTTOU, now %d workers", self._wanted)
        for pending in reversed(self._pending):
            if pending.dead.replaces is None:  # not part of a restart
                self._pending.remove(pending)
                return
        candidates = [
            w
            for w in self._workers.values()
            if not w.stopping and w.pid != self._replacing
        ]
        self._retire(max(candidates, key=lambda w: w.started), "removed")


def _ignore(signo: int, frame: object) -> None:
    """A Python-level handler, so that the wakeup pipe hears the signal."""


def _signal_worker(pid: int, signo: int) -> None:
    # ProcessLookupError: it exited already, and the parent reaps it next.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signo)


def _how_it_ended(status: int) -> str:
    """``exited with status 1`` or ``was killed by SIGKILL``, for log lines."""
    if status >= 0:
        return f"exited with status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    return f"was killed by {name}"


use_for_several_processes(serve)
