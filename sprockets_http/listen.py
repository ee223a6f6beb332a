"""Where a service listens: the addresses it binds, and sockets it inherits.

A service listens on the addresses of the ``bind`` setting (see
:func:`parse_address` for their forms), else on every interface at the
``port`` setting, unless it was handed listening sockets through
``LISTEN_FDS`` (see :func:`inherited`), which are then used instead.
:func:`open_sockets` makes that choice; it binds everything or nothing.

TCP sockets are bound with ``SO_REUSEPORT``, as ``sprockets.http`` bound
them, so that a process can take over a port without it ever being
closed.  The option would also let a second service, started by mistake on
the same port, share it silently and receive half of the traffic; so
unless sharing is asked for (the ``reuse_port`` setting), :func:`bind`
first checks that no other socket listens on the port and fails as a port
in use does.

A unix socket file is created by the process that binds it (the
supervising parent when there are several processes), which also removes
it when the service exits (:func:`release`); a file left behind by a
service that died is replaced, one another process listens on is refused.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import re
import socket
import stat
from collections.abc import Iterable
from typing import TypeAlias

from tornado import netutil

EXIT_CANNOT_LISTEN = 1
"""Exit status of a service that cannot bind (or adopt) its sockets."""

LISTEN_FDS_START = 3
"""The first file descriptor ``LISTEN_FDS`` counts from, as systemd passes them."""

SOCKET_FILES_VARIABLE = "SPROCKETS_HTTP_SOCKET_FILES"
"""Set by :func:`handover_environment`: which sockets handed over through
``LISTEN_FDS`` have a unix socket file this process created (JSON)."""

LOGGER = logging.getLogger("sprockets_http.listen")


@dataclasses.dataclass(frozen=True)
class TCPAddress:
    """A TCP address to bind: ``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT``.

    :param host: a name or an IP address; :data:`None` for every interface
        (IPv4 and IPv6)
    :param port: the port; 0 picks a free one

    .. versionadded:: 3.0.0
    """

    host: str | None
    port: int

    def __str__(self) -> str:
        if self.host is None:
            return f"port {self.port}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class UnixAddress:
    """A unix socket file to create: ``unix:PATH``.

    .. versionadded:: 3.0.0
    """

    path: str

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclasses.dataclass(frozen=True)
class FDAddress:
    """A listening socket this process inherited as file descriptor ``fd``:
    ``fd://N``.

    .. versionadded:: 3.0.0
    """

    fd: int

    def __str__(self) -> str:
        return f"fd://{self.fd}"


Address: TypeAlias = TCPAddress | UnixAddress | FDAddress
"""Any place :func:`open_sockets` can listen on."""


class ListenError(Exception):
    """An address could not be listened on.

    :param address: what could not be listened on, as the operator wrote it
    :param reason: why, e.g. ``"Address already in use"``

    .. versionadded:: 3.0.0
    """

    def __init__(self, address: object, reason: str) -> None:
        super().__init__(f"cannot listen on {address}: {reason}")
        self.address = address
        self.reason = reason


_FORMS = "HOST:PORT, [IPV6]:PORT, :PORT, unix:PATH or fd://N"
_TCP = re.compile(r"(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^\[\]:]*)):(?P<port>[^:]+)")


def parse_address(text: str) -> Address:
    """Parse one address of the ``bind`` setting.

    ``HOST:PORT``
        a host name or IPv4 address, e.g. ``127.0.0.1:8000``; ``:PORT``
        and ``*:PORT`` mean every interface, IPv4 and IPv6
    ``[IPV6]:PORT``
        an IPv6 address, e.g. ``[::1]:8000``
    ``unix:PATH``
        a unix socket file, e.g. ``unix:/run/myservice/http.sock``
    ``fd://N``
        a listening socket inherited as file descriptor ``N``

    :raises ValueError: saying which forms are accepted, or that the port
        is out of range
    """
    text = text.strip()
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ValueError("must name a file after unix:")
        return UnixAddress(path)
    if text.startswith("fd://"):
        number = text[len("fd://") :]
        if not _is_number(number):
            raise ValueError("must be fd:// and a file descriptor number")
        return FDAddress(int(number))
    match = _TCP.fullmatch(text)
    if match is None:
        raise ValueError(f"must be {_FORMS}")
    if not _is_number(match["port"]) or not 0 <= int(match["port"]) <= 65535:
        raise ValueError("must end with a port number (0 to 65535)")
    host = match["ipv6"] or match["host"]
    return TCPAddress(None if host in ("", "*") else host, int(match["port"]))


def addresses(value: object) -> tuple[Address, ...]:
    """The ``bind`` setting: addresses, comma-separated text, or a list of both.

    :raises ValueError: for an address :func:`parse_address` refuses,
        naming it
    """
    items: Iterable[object]
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ValueError(f"must be text or a list of addresses ({_FORMS})")
    parsed: list[Address] = []
    for item in items:
        if isinstance(item, (TCPAddress, UnixAddress, FDAddress)):
            parsed.append(item)
        elif isinstance(item, str) and "," in item:
            parsed.extend(addresses(item))
        elif isinstance(item, str) and item.strip():
            try:
                parsed.append(parse_address(item))
            except ValueError as error:
                if isinstance(value, str) and "," not in value:
                    raise  # the caller names the value, which is this item
                raise ValueError(f"{error} (at {item.strip()!r})") from None
        elif not isinstance(item, str):
            raise ValueError(f"must be text or a list of addresses ({_FORMS})")
    return tuple(parsed)


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


def bind_unix(path: str, mode: int = 0o660) -> socket.socket:
    """Create the unix socket file ``path`` and listen on it.

    :param mode: the file's permissions; a client needs write permission
        to connect
    :raises OSError: when the file cannot be created; ``EADDRINUSE`` when
        another process listens on it, ``EEXIST`` when it is not a socket

    A socket file nobody listens on (left by a service that died) is
    replaced.  :func:`release` removes the file again, in this process only.

    .. versionadded:: 3.0.0
    """
    _remove_stale_socket(path)
    sock = netutil.bind_unix_socket(path, mode=mode)
    info = os.stat(path)
    # Absolute: the service may change its working directory meanwhile.
    _created[sock] = _Created(
        os.path.abspath(path), os.getpid(), info.st_dev, info.st_ino
    )
    return sock


def adopt(fd: int) -> socket.socket:
    """Take over the listening socket at file descriptor ``fd``.

    The socket is made non-blocking and not inherited by programs this
    process executes.

    :raises OSError: when ``fd`` is not open, not a socket, not a stream
        socket, or not listening; ``fd`` is left as it was

    .. versionadded:: 3.0.0
    """
    sock = socket.socket(fileno=fd)
    try:
        if sock.type != socket.SOCK_STREAM:
            raise OSError(errno.EPROTOTYPE, "not a stream socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise OSError(errno.EINVAL, "the socket does not listen")
    except OSError:
        sock.detach()
        raise
    sock.setblocking(False)
    sock.set_inheritable(False)
    return sock


def inherited() -> list[socket.socket]:
    """The listening sockets handed to this process through ``LISTEN_FDS``.

    As systemd's socket activation passes them: ``LISTEN_PID`` is the pid
    of the process they are meant for, ``LISTEN_FDS`` how many there are,
    from file descriptor :data:`LISTEN_FDS_START` (3) on.  A process that
    re-executes itself can hand its sockets to its new self the same way.

    The variables (and ``LISTEN_FDNAMES``) are removed from
    :data:`os.environ` whenever they are present, so that processes this
    one starts do not take the sockets for theirs.

    :returns: the sockets (see :func:`adopt`), none when ``LISTEN_PID`` is
        not this process's pid or the variables are not set
    :raises ListenError: when ``LISTEN_FDS`` is not a number, or one of
        its file descriptors is not a listening stream socket; the sockets
        adopted so far are closed

    .. versionadded:: 3.0.0
    """
    pid = os.environ.pop("LISTEN_PID", None)
    count = os.environ.pop("LISTEN_FDS", None)
    os.environ.pop("LISTEN_FDNAMES", None)
    created = json.loads(os.environ.pop(SOCKET_FILES_VARIABLE, "{}"))
    if pid is None or count is None or pid.strip() != str(os.getpid()):
        return []
    if not _is_number(count.strip()):
        raise ListenError("LISTEN_FDS", f"{count!r} is not a number of sockets")
    sockets: list[socket.socket] = []
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + int(count)):
        try:
            sockets.append(adopt(fd))
        except OSError as error:
            release(sockets)
            raise ListenError(f"fd://{fd} (from LISTEN_FDS)", _reason(error)) from None
    for index, record in created.items():
        _created[sockets[int(index)]] = _Created(*record)
    return sockets


def handover_environment(sockets: list[socket.socket]) -> dict[str, str]:
    """The environment of a new image of this process (:func:`os.execve`)
    that inherits ``sockets``, in this order, through ``LISTEN_FDS``.

    It names the unix socket files this process created, so that the new
    image removes them at exit (see :func:`release`), as this one would
    have.

    .. versionadded:: 3.0.0
    """
    created = {
        str(index): dataclasses.astuple(_created[sock])
        for index, sock in enumerate(sockets)
        if sock in _created and _created[sock].pid == os.getpid()
    }
    return {SOCKET_FILES_VARIABLE: json.dumps(created)}


def open_sockets(
    where: Iterable[Address], *, shared: bool = False, unix_mode: int = 0o660
) -> list[socket.socket]:
    """The sockets to serve on: those :func:`inherited`, else ``where`` bound.

    :param where: the addresses to bind when no socket was inherited
    :param shared: for TCP addresses, see :func:`bind`
    :param unix_mode: the permissions of unix socket files
    :raises ListenError: naming the first address that failed; whatever
        was bound before it is closed again (and its unix socket file
        removed), so nothing stays half-open

    .. versionadded:: 3.0.0
    """
    sockets = inherited()
    if sockets:
        LOGGER.info("using %d socket(s) passed in LISTEN_FDS", len(sockets))
        return sockets
    for address in where:
        try:
            if isinstance(address, TCPAddress):
                sockets += bind(address.port, address.host, shared=shared)
            elif isinstance(address, UnixAddress):
                sockets.append(bind_unix(address.path, unix_mode))
            else:
                sockets.append(adopt(address.fd))
        except (OSError, ValueError) as error:
            release(sockets)
            raise ListenError(address, _reason(error)) from None
    return sockets


def open_or_exit(
    where: Iterable[Address], *, shared: bool = False, unix_mode: int = 0o660
) -> list[socket.socket]:
    """:func:`open_sockets`, or log why not and exit.

    :raises SystemExit: :data:`EXIT_CANNOT_LISTEN` after a CRITICAL line
        naming the address and the reason

    .. versionadded:: 3.0.0
    """
    try:
        return open_sockets(where, shared=shared, unix_mode=unix_mode)
    except ListenError as error:
        LOGGER.critical("%s", error)
        raise SystemExit(EXIT_CANNOT_LISTEN) from None


def release(sockets: Iterable[socket.socket]) -> None:
    """Close ``sockets`` and remove the unix socket files this process created.

    A file is left alone when it was created by another process (a worker
    never removes its parent's), or when it has been replaced since (a new
    instance of the service may listen on it already).

    .. versionadded:: 3.0.0
    """
    for sock in sockets:
        sock.close()
        created = _created.pop(sock, None)
        if created is not None and created.pid == os.getpid():
            created.remove()


def describe(sock: socket.socket) -> str:
    """Where ``sock`` listens, as the ``bind`` setting would name it.

    ``127.0.0.1:8000``, ``[::]:8000``, ``unix:/run/myservice/http.sock``.

    .. versionadded:: 3.0.0
    """
    name = sock.getsockname()
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    if sock.family == socket.AF_INET:
        return f"{name[0]}:{name[1]}"
    if isinstance(name, bytes):  # Linux's abstract namespace
        name = name.decode(errors="backslashreplace")
    return f"unix:{name}"


def tcp_ports(sockets: Iterable[socket.socket]) -> list[int]:
    """The TCP ports of ``sockets``, sorted, each once.

    .. versionadded:: 3.0.0
    """
    return sorted(
        {
            sock.getsockname()[1]
            for sock in sockets
            if sock.family in (socket.AF_INET, socket.AF_INET6)
        }
    )


@dataclasses.dataclass(frozen=True)
class _Created:
    """A unix socket file :func:`bind_unix` created, and who created it."""

    path: str
    pid: int
    device: int
    inode: int

    def remove(self) -> None:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if (info.st_dev, info.st_ino) == (self.device, self.inode):
            os.unlink(self.path)


# Keyed by socket: a socket is closed before release() sees it, when the
# runner's serve() returns, and a closed socket no longer has a name.
_created: dict[socket.socket, _Created] = {}


def _remove_stale_socket(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OSError(errno.EEXIST, "the file exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        # A listener with a full backlog makes connect() wait.
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # nobody listens: left by a service that died
            return
        except TimeoutError:
            pass
    raise OSError(errno.EADDRINUSE, "another process listens on it")


def _is_number(text: str) -> bool:
    # str.isdigit() alone accepts digits int() refuses, such as "²".
    return text.isascii() and text.isdigit()


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


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
