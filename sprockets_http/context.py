"""The request being handled: its id, for every record logged meanwhile.

Every request that a :class:`sprockets_http.app.Application` serves gets a
request id:

* the ``X-Request-Id`` header of the request, else its ``Correlation-Id``
  header (which ``sprockets.mixins.correlation`` uses), when it is a *safe
  token*: 1 to :data:`MAX_LENGTH` characters, each an ASCII letter, a digit
  or one of ``- . _ ~ + / = : @``;
* else a new id, 32 lower-case hexadecimal digits (see
  :func:`new_request_id`).  A
  header that is not a safe token (a line break, quotes, non-ASCII text,
  10 kB of anything...) is never echoed nor logged: it is replaced.

The id is sent back in the ``X-Request-Id`` response header (and in
``Correlation-Id`` when the request carried that header), and it is the
value of :func:`current_request_id` while the request is handled: in the
handler's own code, coroutines included, in
:class:`~sprockets_http.mixins.ErrorLogger`'s lines and in the access log.
:func:`install_record_factory`, which :func:`sprockets_http.run` calls,
gives every :class:`logging.LogRecord` a ``request_id`` attribute, so the
log formats of :mod:`sprockets_http.logconfig` show it.

Read it to pass it on to the services a handler calls::

    headers = {"X-Request-Id": sprockets_http.current_request_id() or ""}

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import re
import secrets
from typing import Any

from tornado import httputil

__all__ = [
    "HEADER",
    "MAX_LENGTH",
    "begin",
    "current_request_id",
    "echo",
    "install_record_factory",
    "new_request_id",
    "request_id_from",
]

HEADER = "X-Request-Id"
"""The request and response header that carries the request id."""

CORRELATION_HEADER = "Correlation-Id"
"""The header ``sprockets.mixins.correlation`` uses, read when
:data:`HEADER` is absent, and echoed when the request carried it."""

MAX_LENGTH = 128
"""The longest request id taken from a request."""

_SAFE_TOKEN = re.compile(rf"[A-Za-z0-9._~+/=:@-]{{1,{MAX_LENGTH}}}").fullmatch

_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sprockets_http.request_id", default=None
)

# Where the id of a request is kept on its HTTPServerRequest, and whether
# the request came with a Correlation-Id header.
_ATTRIBUTE = "_sprockets_http_request_id"
_ECHO_CORRELATION = "_sprockets_http_echo_correlation"


def current_request_id() -> str | None:
    """The id of the request being handled, or :data:`None` outside one.

    .. versionadded:: 3.0.0
    """
    return _REQUEST_ID.get()


def new_request_id() -> str:
    """A new request id: 32 lower-case hexadecimal digits.

    16 random digits drawn once per process (anew in a forked child), then
    a count of the process's ids.  Unique without drawing random bits for
    every request: an id tells records apart, it is no secret.

    .. versionadded:: 3.0.0
    """
    # One formatting of one number: the random bits are its high 64.
    return "%032x" % (_prefix + next(_counter))


def _new_prefix() -> None:
    global _prefix, _counter
    _prefix = secrets.randbits(64) << 64
    _counter = itertools.count()


_prefix = 0
_counter = itertools.count()
_new_prefix()
os.register_at_fork(after_in_child=_new_prefix)


def request_id_from(headers: httputil.HTTPHeaders) -> str:
    """The id for a request with these headers (see the module docs).

    :returns: the ``X-Request-Id`` header, else the ``Correlation-Id``
        header, when it is a safe token; else :func:`new_request_id`

    .. versionadded:: 3.0.0
    """
    # get_list(): get() raises and catches KeyError for a missing header,
    # a cost paid on almost every request.
    return _chosen(headers.get_list(HEADER) or headers.get_list(CORRELATION_HEADER))


def _chosen(given: list[str]) -> str:
    if len(given) == 1 and _SAFE_TOKEN(given[0]):
        return given[0]
    return new_request_id()


def request_id_of(request: httputil.HTTPServerRequest) -> str | None:
    """The id given to ``request``, or :data:`None` when it has none."""
    return getattr(request, _ATTRIBUTE, None)


def begin(request: httputil.HTTPServerRequest) -> str:
    """Give ``request`` its id, and make it the current one; returns it.

    Call it in the context of the connection, as
    :meth:`sprockets_http.app.Application.find_handler` does: Tornado
    creates the handler's task there (when the request is complete, or once
    its headers are in for a handler that streams the body), and the task
    keeps a copy of the context, so the handler's code, and whatever it
    starts, sees the id.  The connection's own context keeps it until its
    next request begins: a record Tornado logs about the connection in
    between (a malformed next request, say) carries the id of the last one.
    """
    headers = request.headers
    correlation = headers.get_list(CORRELATION_HEADER)
    request_id = _chosen(headers.get_list(HEADER) or correlation)
    attributes = request.__dict__
    attributes[_ATTRIBUTE] = request_id
    if correlation:
        attributes[_ECHO_CORRELATION] = True
    _REQUEST_ID.set(request_id)
    return request_id


def echo(request: httputil.HTTPServerRequest, headers: httputil.HTTPHeaders) -> None:
    """Put ``request``'s id in the response ``headers``, if it has one.

    ``X-Request-Id``, and ``Correlation-Id`` when the request carried that
    header.
    """
    attributes = request.__dict__
    request_id = attributes.get(_ATTRIBUTE)
    if request_id is not None:
        headers[HEADER] = request_id
        if _ECHO_CORRELATION in attributes:
            headers[CORRELATION_HEADER] = request_id


def install_record_factory() -> None:
    """Give every log record a ``request_id`` attribute.

    The value is :func:`current_request_id` when the record is made, so a
    record handed to another thread (a :class:`logging.handlers.QueueHandler`)
    keeps the id of the request that logged it.  The factory in place is
    wrapped, not replaced; calling this again changes nothing.

    .. versionadded:: 3.0.0
    """
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_adds_request_id", False):
        return
    get = _REQUEST_ID.get

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.request_id = get()
        return record

    make_record._adds_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)
