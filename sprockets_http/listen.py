"""Where a service listens: binding its sockets before it serves.

Sockets are bound with ``SO_REUSEPORT``, as ``sprockets.http`` bound them,
so that a process can take over a port without it ever being closed.  The
option would also let a second service, started by mistake on the same
port, share it silently and receive half of the traffic; so unless
sharing is asked for (the ``reuse_port`` setting), :func:`bind` first
checks that no other socket listens on the port and fails as a port in use
does.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import errno
import logging
import os
import socket

from tornado import netutil

EXIT_CANNOT_LISTEN = 1
"""Exit status of a service that cannot bind its sockets."""

LISTEN_FDS_START = 3
"""The first file descriptor of sockets handed over (see :func:`inherited`)."""

LOGGER = logging.getLogger("sprockets_http.listen")


def bind(
    port: int, address: str | None = None, *, shared: bool = False
) -> list[socket.socket]:
    """Bind the listening sockets for ``port``.

    :param port: the TCP port; 0 picks a free one
    :param address: the address to bind; :data:`None` binds every interface
    :param shared: let other processes listen on the same port (they must
        ask for ``SO_REUSEPORT`` too); otherwise a port another socket
        listens on is refused, whatever options that socket has
    :raises OSError: when the port cannot be bound, ``EADDRINUSE`` when it
        is in use
    """
    if port and not shared:
        _check_free(port, address)
    return netutil.bind_sockets(port, address=address, reuse_port=True)


def bind_or_exit(port: int, *, shared: bool = False) -> list[socket.socket]:
    """:func:`bind` every interface, or log why not and exit.

    :raises SystemExit: :data:`EXIT_CANNOT_LISTEN` when the port cannot be
        bound, after a CRITICAL line naming the port and the reason
    """
    try:
        return bind(port, shared=shared)
    except OSError as error:
        LOGGER.critical("cannot listen on port %s: %s", port, error.strerror)
        raise SystemExit(EXIT_CANNOT_LISTEN) from None


def _check_free(port: int, address: str | None) -> None:
    # A socket bound without SO_REUSEPORT cannot share a port with anyone;
    # bound and closed at once, it tells whether the port is free now.
    try:
        probes = netutil.bind_sockets(port, address=address)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise
        return  # anything else shows again when the real bind fails
    for probe in probes:
        probe.close()


def inherited() -> list[socket.socket]:
    """The listening sockets this process was handed, systemd's way.

    systemd's socket activation, and a supervisor that re-executes itself
    (see :mod:`sprockets_http.reload`), pass sockets as file descriptors 3,
    4... and say so in two environment variables: ``LISTEN_FDS``, how many,
    and ``LISTEN_PID``, the process they are for.  When ``LISTEN_PID`` names
    this process, the sockets are returned (not inherited by child
    processes any more) and the variables (with ``LISTEN_FDNAMES``) are
    removed, so that no child takes them for its own.

    :returns: the sockets, or an empty list when none were handed over
        to this process

    .. versionadded:: 3.0.0
    """
    pid, count = os.environ.get("LISTEN_PID", ""), os.environ.get("LISTEN_FDS", "")
    if not (pid.isdigit() and count.isdigit()) or int(pid) != os.getpid():
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    sockets = []
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + int(count)):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets
