"""Whom to believe about the client: the proxies allowed to forward its address.

Behind a proxy, every connection comes from the proxy, which says who the
client is in ``X-Forwarded-For`` (or ``X-Real-Ip``) and which scheme it
used in ``X-Forwarded-Proto`` (or ``X-Scheme``).  Any client can send those
headers too, so they are believed only on connections from the peers of
the ``forwarded_allow_ips`` setting (an :class:`AllowList`): loopback by
default, as a proxy on the same machine connects.  From any other peer they
are ignored, and ``request.remote_ip`` and ``request.protocol`` stay the
socket's.  Unix-socket peers are always believed: only processes that may
open the socket file can connect.

:class:`ForwardedHTTPServer` applies this per connection, deciding once
when the connection is accepted.  The application's ``xheaders`` setting
(default on) still turns the headers off for every peer.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import typing
from collections.abc import Awaitable
from typing import Any

from tornado import http1connection, httpserver, httputil, iostream

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True)
class AllowList:
    """The peers whose forwarding headers are believed.

    :param networks: addresses and networks of trusted proxies
    :param everyone: believe every peer (``*``)

    .. versionadded:: 3.0.0
    """

    networks: tuple[_Network, ...] = ()
    everyone: bool = False

    @classmethod
    def parse(cls, value: object) -> AllowList:
        """The ``forwarded_allow_ips`` setting, from text or a list.

        :param value: comma-separated IP addresses and CIDR networks
            (``"127.0.0.1, 10.0.0.0/8, ::1"``), a list of them, ``"*"`` for
            every peer, or an :class:`AllowList`; an empty value trusts no
            peer
        :raises ValueError: naming an entry that is not an address or a
            network
        """
        if isinstance(value, AllowList):
            return value
        if isinstance(value, str):
            entries: list[object] = list(value.split(","))
        elif isinstance(value, (list, tuple)):
            entries = list(value)
        else:
            raise ValueError("must be IP addresses and networks, comma-separated")
        networks: list[_Network] = []
        everyone = False
        for entry in entries:
            text = str(entry).strip()
            if text == "*":
                everyone = True
            if text in ("", "*"):
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                message = "must be IP addresses and networks (or *)"
                if len(entries) > 1:  # else the caller names the entry
                    message += f", {text!r} is neither"
                raise ValueError(message) from None
        return cls(everyone=True) if everyone else cls(tuple(networks))

    def __str__(self) -> str:
        if self.everyone:
            return "*"
        return ",".join(map(str, self.networks))

    def allows(self, address: str) -> bool:
        """Whether the peer at IP ``address`` may forward a client's address.

        :param address: an IP address as a socket names its peer; one that
            is not an IP address is not allowed
        """
        if self.everyone:
            return True
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # an IPv4 client of a dual-stack socket
        return any(ip in network for network in self.networks)

    def allows_peer(self, family: int, peer: Any) -> bool:
        """Whether a connection from ``peer`` (as ``accept()`` returned it,
        on a socket of address ``family``) may forward a client's address.

        Unix-socket peers always may.
        """
        if family == socket.AF_UNIX:
            return True
        if family in (socket.AF_INET, socket.AF_INET6):
            return self.allows(str(peer[0]))
        return False


_FORWARDING_HEADERS = frozenset(
    {"X-Forwarded-For", "X-Real-Ip", "X-Forwarded-Proto", "X-Scheme"}
)

LOOPBACK = AllowList.parse("127.0.0.0/8,::1")
"""The default: a proxy on this machine.

.. versionadded:: 3.0.0
"""


class ForwardedHTTPServer(httpserver.HTTPServer):
    """An :class:`~tornado.httpserver.HTTPServer` that believes forwarding
    headers only from the peers of its allow-list.

    Takes the arguments of :class:`~tornado.httpserver.HTTPServer`, and:

    :param forwarded_allow_ips: the peers whose ``X-Forwarded-For``,
        ``X-Real-Ip``, ``X-Forwarded-Proto`` and ``X-Scheme`` headers are
        applied when ``xheaders`` is on; default :data:`LOOPBACK`

    .. versionadded:: 3.0.0
    """

    def initialize(
        self,
        *args: Any,
        forwarded_allow_ips: AllowList = LOOPBACK,
        **kwargs: Any,
    ) -> None:
        super().initialize(*args, **kwargs)
        self.forwarded_allow_ips = forwarded_allow_ips
        self._xheaders_wanted = self.xheaders
        self._trusted: set[iostream.IOStream] = set()

    def handle_stream(self, stream: iostream.IOStream, address: Any) -> None:
        # Decided once per connection; each request then costs a set lookup.
        if (
            self._xheaders_wanted
            and stream.socket is not None
            and self.forwarded_allow_ips.allows_peer(stream.socket.family, address)
        ):
            self._trusted.add(stream)
        super().handle_stream(stream, address)

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        # HTTPServer would wrap every request of a trusted peer in its own
        # adapter, which resolves the client's address (getaddrinfo) even
        # when no forwarding header came; _Forwarded does the same work only
        # for the requests that carry one.
        self.xheaders = False
        delegate = super().start_request(server_conn, request_conn)
        # server_conn is Tornado's HTTP1ServerConnection, typed as object.
        if getattr(server_conn, "stream", None) in self._trusted:
            return _Forwarded(delegate, request_conn)
        return delegate

    def on_close(self, server_conn: object) -> None:
        conn = typing.cast(http1connection.HTTP1ServerConnection, server_conn)
        self._trusted.discard(conn.stream)
        super().on_close(server_conn)


class _Forwarded(httputil.HTTPMessageDelegate):
    """Applies a trusted request's forwarding headers, as Tornado's
    ``xheaders`` does, when the request has one; else passes it through."""

    __slots__ = ("_applied", "_connection", "_delegate")

    def __init__(
        self,
        delegate: httputil.HTTPMessageDelegate,
        connection: httputil.HTTPConnection,
    ) -> None:
        self._delegate = delegate
        self._connection = connection
        self._applied = False

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        # HTTPHeaders iterates over its normalised names.
        if not _FORWARDING_HEADERS.isdisjoint(headers):
            # The connection's context is Tornado's, and these two methods
            # are what its own adapter calls.
            context: Any = getattr(self._connection, "context", None)
            context._apply_xheaders(headers)
            self._applied = True
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._delegate.data_received(chunk)

    def finish(self) -> None:
        self._delegate.finish()
        self._unapply()

    def on_connection_close(self) -> None:
        self._delegate.on_connection_close()
        self._unapply()

    def _unapply(self) -> None:
        # The next request on this connection starts from the socket's peer.
        if self._applied:
            context: Any = getattr(self._connection, "context", None)
            context._unapply_xheaders()
            self._applied = False
