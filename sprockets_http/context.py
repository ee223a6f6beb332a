"""The request being handled: its id, for every record logged meanwhile.

Every request that a :class:`sprockets_http.app.Application` serves gets a
request id:

* the ``X-Request-Id`` header of the request, else its ``Correlation-Id``
  header (which ``sprockets.mixins.correlation`` uses), when it is a *safe
  token*: 1 to :data:`MAX_LENGTH` characters, each an ASCII letter, a digit
  or one of ``- . _ ~ + / = : @``;
* else a new random id, 32 lower-case hexadecimal digits (128 bits).  A
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
import logging
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any

from tornado import httputil

__all__ = [
    "HEADER",
    "MAX_LENGTH",
    "current_request_id",
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

_random_bits = random.getrandbits

_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sprockets_http.request_id", default=None
)

# Where the id of a request is kept on its HTTPServerRequest.
_ATTRIBUTE = "_sprockets_http_request_id"


def current_request_id() -> str | None:
    """The id of the request being handled, or :data:`None` outside one.

    .. versionadded:: 3.0.0
    """
    return _REQUEST_ID.get()


def new_request_id() -> str:
    """A new random request id: 32 lower-case hexadecimal digits.

    The bits come from :mod:`random`, which every process seeds anew from
    the system after a fork, not from :func:`os.urandom`: an id tells
    records apart, it is no secret, and a system call per request costs.

    .. versionadded:: 3.0.0
    """
    return f"{_random_bits(128):032x}"


def request_id_from(headers: httputil.HTTPHeaders) -> str:
    """The id for a request with these headers (see the module docs).

    :returns: the ``X-Request-Id`` header, else the ``Correlation-Id``
        header, when it is a safe token; else :func:`new_request_id`

    .. versionadded:: 3.0.0
    """
    # get_list(): get() raises and catches KeyError for a missing header,
    # a cost paid on almost every request.
    given = headers.get_list(HEADER) or headers.get_list(CORRELATION_HEADER)
    if len(given) == 1 and _SAFE_TOKEN(given[0]):
        return given[0]
    return new_request_id()


def request_id_of(request: httputil.HTTPServerRequest) -> str | None:
    """The id given to ``request``, or :data:`None` when it has none."""
    return getattr(request, _ATTRIBUTE, None)


def begin(
    request: httputil.HTTPServerRequest, delegate: httputil.HTTPMessageDelegate
) -> httputil.HTTPMessageDelegate:
    """Give ``request`` its id; the delegate that handles it in its context.

    The returned delegate runs each of ``delegate``'s methods in a context
    of its own where :func:`current_request_id` is the request's id.  The
    handler's task is created in that context (Tornado creates it in
    ``finish``, or in ``headers_received`` for a handler that streams the
    request body), so the handler's code sees the id, and the connection,
    which serves the next request in its own context, does not.
    """
    request_id = request_id_from(request.headers)
    setattr(request, _ATTRIBUTE, request_id)
    return _InRequestContext(delegate, request_id)


class _InRequestContext(httputil.HTTPMessageDelegate):
    __slots__ = ("_context", "_delegate")

    def __init__(self, delegate: httputil.HTTPMessageDelegate, request_id: str):
        self._delegate = delegate
        self._context = contextvars.copy_context()
        self._context.run(_REQUEST_ID.set, request_id)

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        return self._context.run(self._delegate.headers_received, start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._context.run(self._delegate.data_received, chunk)

    def finish(self) -> None:
        self._context.run(self._delegate.finish)

    def on_connection_close(self) -> None:
        self._context.run(self._delegate.on_connection_close)

    def execute(self) -> Awaitable[None] | None:
        # What Tornado's legacy Application.__call__ calls on a delegate.
        run: Callable[..., Awaitable[None] | None] = self._context.run
        return run(self._delegate.execute)  # type: ignore[attr-defined]


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
