"""New code on SIGHUP: the supervisor checks it, then re-executes itself.

Workers forked from the supervisor run the code it loaded when it started.
To serve the code a deploy has put on disk, a supervisor started by
:func:`sprockets_http.run` (so also by ``python -m sprockets_http``), on
SIGHUP:

1. **checks** the new code: it runs its own command line
   (:data:`sys.orig_argv`, with the environment the service started with)
   once more with :data:`CHECK_VARIABLE` set, which makes
   :func:`sprockets_http.run` import and build the application and exit 0
   without serving (what ``python -m sprockets_http --check`` does).  When
   the check fails (its own output says why) or takes longer than
   :data:`CHECK_TIMEOUT`, the supervisor logs it and nothing else happens:
   the workers keep serving the code they run.
2. **re-executes itself** with that command line, keeping its process id
   (what Docker, systemd and PID files know it by).  It hands over its
   listening sockets the way systemd's socket activation does
   (``LISTEN_FDS``/``LISTEN_PID``, see
   :func:`sprockets_http.listen.inherited`), so the port never stops
   accepting, and its workers, which stay its children: their pids and
   the file descriptors of their channels, in :data:`HANDOVER_VARIABLE`.
3. The new image **adopts** the workers and replaces them one at a time:
   each new worker is ready before an old one stops accepting and drains.
   A new worker that fails before it is ready (a ``before_run`` callback
   that raises with the new code) ends the replacement: the old workers
   keep serving, and the log says why.

The signals the supervisor handles are blocked across the exec, so one that
arrives meanwhile is handled by the new image.  If the exec itself fails,
the supervisor carries on with the workers it has.

A service that builds its :class:`~sprockets_http.runner.Runner` itself and
calls :meth:`~sprockets_http.runner.Runner.run` is not re-executed: SIGHUP
restarts its workers from the code already loaded.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from typing import NoReturn

from sprockets_http import listen
from sprockets_http.runner import EXIT_START_FAILED

LOGGER = logging.getLogger("sprockets_http.reload")

CHECK_VARIABLE = "SPROCKETS_HTTP_CHECK"
"""Set (to ``1``), :func:`sprockets_http.run` only imports and builds the
application, then exits 0, or with the status of a failed start."""

HANDOVER_VARIABLE = "SPROCKETS_HTTP_HANDOVER"
"""Where a re-executed supervisor finds the workers it adopts (JSON)."""

CHECK_TIMEOUT = 60.0
"""Seconds the check of new code may take before it counts as failed."""

# The environment the service started with: a re-executed service reads its
# configuration (and its --env-file) afresh, as a restarted one would.
_STARTUP_ENVIRONMENT = dict(os.environ)
_NOT_FOR_THE_CHECK = (
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    HANDOVER_VARIABLE,
    listen.SOCKET_FILES_VARIABLE,
)


def check_requested() -> bool:
    """Whether this process is a check (:data:`CHECK_VARIABLE` is set).

    The variable is removed, so that processes the factory starts do not
    see it.
    """
    return os.environ.pop(CHECK_VARIABLE, "") not in ("", "0")


def check(build: Callable[[], object]) -> NoReturn:
    """Build the application with ``build`` on a new event loop, and exit.

    :raises SystemExit: 0 when ``build`` returned,
        :data:`~sprockets_http.runner.EXIT_START_FAILED` after logging its
        exception when it raised
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        build()
    except Exception:
        LOGGER.exception("check failed: creating the application failed")
        raise SystemExit(EXIT_START_FAILED) from None
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    LOGGER.info("check passed: the application was built (pid %d)", os.getpid())
    raise SystemExit(0)


@dataclasses.dataclass(frozen=True)
class Check:
    """A check of the code on disk, running as a child process."""

    pid: int
    deadline: float  # time.monotonic() after which it counts as failed


def can_reexec() -> bool:
    """Whether this process knows the command line that started it."""
    return bool(sys.executable and sys.orig_argv)


def keep_across_reexec(name: str, value: str) -> None:
    """Have the re-executed service start with ``name`` set to ``value``.

    A re-executed service starts from the environment the service started
    with; this adds to it what must survive a SIGHUP, and to the check's.
    :mod:`sprockets_http.metrics` keeps its directory, and so the counts,
    this way.

    .. versionadded:: 3.0.0
    """
    _STARTUP_ENVIRONMENT[name] = value


def start_check() -> Check:
    """Run this process's command line as a check, in a child process.

    Its output goes where this process's goes.  Reap it like any child.

    :raises OSError: when it cannot be started
    """
    environment = {
        name: value
        for name, value in _STARTUP_ENVIRONMENT.items()
        if name not in _NOT_FOR_THE_CHECK
    }
    environment[CHECK_VARIABLE] = "1"
    pid = os.posix_spawn(sys.executable, sys.orig_argv, environment)
    return Check(pid, time.monotonic() + CHECK_TIMEOUT)


@dataclasses.dataclass(frozen=True)
class HandedWorker:
    """A worker handed over to the re-executed supervisor.

    :param pid: its process id
    :param channel: the file descriptor of the parent's end of its channel
    :param ready: whether it said it was ready
    :param cause: why it is stopping, or :data:`None` while it serves
    :param kill_in: seconds left before it must be killed, while stopping
    """

    pid: int
    channel: int
    ready: bool
    cause: str | None = None
    kill_in: float | None = None


@dataclasses.dataclass(frozen=True)
class Handover:
    """What a supervisor hands over to its re-executed self.

    :param wanted: how many workers to run
    :param budget: the largest stop budget a worker reported, if any
    :param workers: its workers
    """

    wanted: int
    budget: float | None
    workers: list[HandedWorker]


def reexec(
    sockets: list[socket.socket], handover: Handover, blocked: Iterable[int]
) -> OSError:
    """Replace this process's image with a new run of its command line.

    :param sockets: the listening sockets, handed over as file descriptors
        3, 4... with ``LISTEN_FDS`` and ``LISTEN_PID``
    :param handover: the workers, whose channels stay open across the exec
    :param blocked: signals to keep blocked across the exec, so that they
        wait for the new image's handlers
    :returns: only when the exec failed: the error, after everything was
        put back as it was
    """
    first = listen.LISTEN_FDS_START
    above = first + len(sockets)  # where copies can't be in the way
    copies = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, above) for s in sockets]
    # What occupies 3, 4... now (a selector, a pipe) is put back if the
    # exec fails.
    displaced: dict[int, int] = {}
    for target in range(first, above):
        with contextlib.suppress(OSError):  # nothing there
            displaced[target] = fcntl.fcntl(target, fcntl.F_DUPFD_CLOEXEC, above)
    channels = [
        fcntl.fcntl(w.channel, fcntl.F_DUPFD_CLOEXEC, above) for w in handover.workers
    ]
    environment = dict(_STARTUP_ENVIRONMENT)
    environment.update(
        LISTEN_FDS=str(len(sockets)),
        LISTEN_PID=str(os.getpid()),
        **{HANDOVER_VARIABLE: _encode(handover, channels)},
        **listen.handover_environment(sockets),
    )
    environment.pop("LISTEN_FDNAMES", None)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        for target, copy in enumerate(copies, first):
            os.dup2(copy, target, inheritable=True)
        for fd in channels:
            os.set_inheritable(fd, True)
        flush_output()
        os.execve(sys.executable, sys.orig_argv, environment)
    except OSError as error:
        for target in range(first, above):
            if target in displaced:
                os.dup2(displaced[target], target, inheritable=False)
            else:
                os.close(target)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in (*copies, *displaced.values(), *channels):
            os.close(fd)
        return error
    raise AssertionError("unreachable: execve returned")  # pragma: no cover


def flush_output() -> None:
    """Flush the logging handlers and standard streams before an exec:
    what they buffer would be lost with the process's image."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()


def take_handover() -> Handover | None:
    """In a re-executed supervisor: what its former image handed over.

    The variable is removed, so that workers and other children do not
    see it; the channels' descriptors are no longer inherited.
    """
    text = os.environ.pop(HANDOVER_VARIABLE, None)
    if not text:
        return None
    document = json.loads(text)
    workers = [HandedWorker(**worker) for worker in document["workers"]]
    for worker in workers:
        os.set_inheritable(worker.channel, False)
    return Handover(document["wanted"], document["budget"], workers)


def _encode(handover: Handover, channels: list[int]) -> str:
    workers = [
        dataclasses.replace(worker, channel=channel)
        for worker, channel in zip(handover.workers, channels, strict=True)
    ]
    return json.dumps(
        {
            "wanted": handover.wanted,
            "budget": handover.budget,
            "workers": [dataclasses.asdict(worker) for worker in workers],
        }
    )
