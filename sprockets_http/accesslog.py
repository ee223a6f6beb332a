"""The access log: one record per request, with fields to filter on.

:class:`sprockets_http.app.Application` writes one record per request to the
``tornado.access`` logger.  Its message is the familiar line::

    REMOTE - USER [dd/Mon/YYYY:HH:MM:SS +0000] "METHOD PATH VERSION"
    STATUS "REASON" BYTES "REFERER" "USER-AGENT" (secs:0.123)

and the record carries these fields, which the ``json`` log format writes
as members (see :mod:`sprockets_http.logconfig`):

================  =======  ================================================
field             type     what
================  =======  ================================================
``method``        string   the request method
``path``          string   the path, without the query string
``status``        integer  the response status
``duration_ms``   number   milliseconds from the request's arrival to its
                           answer
``remote_ip``     string   the client's address (see ``xheaders``)
``user_agent``    string   the ``User-Agent`` header, or null
``bytes_sent``    integer  bytes of response body sent
``request_id``    string   see :mod:`sprockets_http.context`
``handler``       string   the handler class's qualified name,
                           ``module.Class``
``query``         string   only with ``access_log_query`` on: the query
                           string
================  =======  ================================================

A query string can hold secrets (tokens, e-mail addresses), so by default
it appears nowhere in the record, message included.  The ``access_log_query``
setting (or the ``ACCESS_LOG_QUERY`` environment variable) logs it.

The level follows the status: INFO below 400, WARNING for 4xx, ERROR for
5xx.  A handler may choose the level of its own record by setting
``access_log_level`` (a class attribute, or on ``self`` while it handles
the request); :class:`~sprockets_http.health.HealthHandler` and
:class:`~sprockets_http.metrics.MetricsHandler` log their answers at DEBUG
(the health check's 503 during a drain at INFO).  A handler with
``access_log_failures_only = True`` logs its successes at DEBUG.  Values taken
from the request have their control characters escaped in the message, so a
client cannot forge a log line; nothing is formatted for a record the
logger would drop.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tornado import httputil, web

from sprockets_http import _logtext, context

__all__ = ["LOGGER", "bytes_sent", "handler_name", "level_for", "log_request"]

LOGGER = logging.getLogger("tornado.access")
"""The access log's logger, Tornado's own ``tornado.access``."""

# The fields the line shows already: the text format does not repeat them.
_IN_MESSAGE = (
    "method",
    "path",
    "query",
    "status",
    "duration_ms",
    "remote_ip",
    "user_agent",
    "bytes_sent",
    "handler",
)
_BYTES_SENT = "_sprockets_http_bytes_sent"
_names: dict[type[Any], str] = {}


def handler_name(handler_class: type[Any]) -> str:
    """The qualified name of a handler class: ``module.Class``.

    Computed once per class.
    """
    name = _names.get(handler_class)
    if name is None:
        name = _names[handler_class] = (
            f"{handler_class.__module__}.{handler_class.__qualname__}"
        )
    return name


def level_for(handler: web.RequestHandler, status: int) -> int:
    """The level of the access record of ``handler``'s answer with ``status``."""
    level: int | None = getattr(handler, "access_log_level", None)
    if level is not None:
        return level
    if status >= 500:
        return logging.ERROR
    if status >= 400:
        return logging.WARNING
    if getattr(handler, "access_log_failures_only", False):
        return logging.DEBUG
    return logging.INFO


def count_body_bytes(request: Any, size: int, first: bool = False) -> None:
    """Add ``size`` bytes of response body to what ``request`` has sent.

    :param first: these are the first bytes
    """
    attributes = request.__dict__
    attributes[_BYTES_SENT] = size if first else attributes[_BYTES_SENT] + size


def bytes_sent(request: Any) -> int:
    """The bytes of response body ``request`` has sent so far."""
    sent: int = request.__dict__.get(_BYTES_SENT, 0)
    return sent


def _header(headers: httputil.HTTPHeaders, name: str) -> str | None:
    # Not get(), which raises and catches KeyError when the header is absent.
    values = headers.get_list(name)
    return ",".join(values) if values else None


class _Dates:
    """The line's date, formatted once per second: requests come many a second."""

    second = -1
    text = ""

    @classmethod
    def at(cls, when: float) -> str:
        second = int(when)
        if second != cls.second:
            cls.text = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second))
            cls.second = second
        return cls.text


def log_request(
    handler: web.RequestHandler,
    status: int,
    level: int,
    with_query: bool,
    elapsed: float | None = None,
) -> None:
    """Write the access record of ``handler``'s finished request at ``level``.

    :param with_query: show the query string, in the message and as the
        ``query`` field
    :param elapsed: the request's duration in seconds, when the caller has
        it already; else it is read from the request
    """
    request = handler.request
    if elapsed is None:
        elapsed = request.request_time()
    # Whole microseconds: no rounding of floats, which costs more than the
    # rest of the arithmetic here.
    microseconds = int(elapsed * 1_000_000)
    milliseconds = (microseconds + 500) // 1000
    method = request.method or "-"
    headers = request.headers
    user_agent = _header(headers, "User-Agent")
    referer = _header(headers, "Referer")
    user = getattr(handler, "_current_user", None)  # never call get_current_user
    target = (request.uri if with_query else request.path) or "-"
    # The message is made here, once, rather than from arguments later.
    shown = _logtext.escape_each(
        "-" if user is None else str(user),
        method,
        target,
        handler._reason,
        "-" if referer is None else referer,
        "-" if user_agent is None else user_agent,
    )
    line = (
        f"{request.remote_ip} - {shown[0]} [{_Dates.at(time.time() - elapsed)}] "
        f'"{shown[1]} {shown[2]} {request.version}" {status} "{shown[3]}" '
        f"{handler._headers.get('Content-Length') or '-'} "
        f'"{shown[4]}" "{shown[5]}" (secs:{milliseconds // 1000}.'
        f"{_logtext.THREE_DIGITS[milliseconds % 1000]})"
    )
    record = LOGGER.makeRecord(LOGGER.name, level, __file__, 0, line, (), None)
    # Set one by one: cheaper than makeRecord's extra= dictionary.
    record.method = method
    record.path = request.path
    if with_query:
        record.query = request.query
    record.status = status
    record.duration_ms = microseconds / 1000
    record.remote_ip = request.remote_ip
    record.user_agent = user_agent
    record.bytes_sent = request.__dict__.get(_BYTES_SENT, 0)
    record.request_id = context.request_id_of(request)
    record.handler = handler_name(type(handler))
    record.fields_in_message = _IN_MESSAGE
    LOGGER.handle(record)
