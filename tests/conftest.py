"""Shared fixtures.

``services`` starts real service processes (see :mod:`support`); every
process group still alive at the end of a test is killed, even when the test
failed.  ``notify_socket`` listens as systemd's ``NOTIFY_SOCKET`` does.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest
from support import Service


@pytest.fixture
def services() -> Iterator[type[Service]]:
    """Start :class:`Service` processes; their groups are killed afterwards."""
    started: list[Service] = []

    class TrackedService(Service):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield TrackedService
    for service in started:
        service.kill_group()


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace, like systemd's."""
    name = f"@sprockets-http-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(15)
    yield sock, name
    sock.close()
