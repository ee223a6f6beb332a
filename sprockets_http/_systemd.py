"""Telling systemd about the service's state, without a dependency.

systemd's ``Type=notify`` services report ``READY=1`` and ``STOPPING=1`` as
datagrams on the unix socket named by ``NOTIFY_SOCKET``.  A name starting
with ``@`` is in the abstract namespace: the ``@`` stands for a NUL byte.
"""

from __future__ import annotations

import logging
import os
import socket

LOGGER = logging.getLogger("sprockets_http.systemd")


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd when it listens.

    :returns: whether a message was sent; :data:`False` when
        ``NOTIFY_SOCKET`` is not set, or when sending failed (logged as a
        warning: the service keeps running either way)
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), address)
    except OSError as error:
        LOGGER.warning("could not tell systemd %s: %s", state, error)
        return False
    return True
