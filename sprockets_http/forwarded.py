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
        # HTTPServer reads its xheaders attribute here, for this request
        # only: set it for this connection's peer.
        conn = typing.cast(http1connection.HTTP1ServerConnection, server_conn)
        self.xheaders = conn.stream in self._trusted
        return super().start_request(server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        conn = typing.cast(http1connection.HTTP1ServerConnection, server_conn)
        self._trusted.discard(conn.stream)
        super().on_close(server_conn)
