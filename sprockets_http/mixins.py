"""Request handler mixins that log failures and answer them with a document.

:class:`LoggingHandler` gives a handler a logger named after its class.
:class:`ErrorLogger` logs every error response the same way, once.
:class:`ErrorWriter` and :class:`ProblemDetailsWriter` replace Tornado's HTML
error page with a machine-readable document; :class:`DetailedHTTPError` is
how a handler deliberately tells the client more than the status.

Put the mixins before :class:`tornado.web.RequestHandler` in the bases::

    class Handler(mixins.ErrorLogger, mixins.ErrorWriter, web.RequestHandler):
        ...

They are plain mixin classes, as in ``sprockets.http``: they may come in any
order among themselves and with other mixins such as
:class:`sprockets.mixins.mediatype.content.ContentMixin`.

An error document never carries an exception's text or a ``log_message``
unless the application runs with ``serve_traceback`` on.  The rules are in
:doc:`/errors`.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import traceback
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tornado import web

from sprockets_http import _logtext, context

if TYPE_CHECKING:
    _Handler = web.RequestHandler
else:
    # Mixins, not handlers: a handler class may list them in any order
    # without breaking its method resolution order.
    _Handler = object

__all__ = [
    "DetailedHTTPError",
    "ErrorLogger",
    "ErrorWriter",
    "LoggingHandler",
    "ProblemDetailsWriter",
]

_LOGGER = logging.getLogger(__name__)

# RFC 9112 reason-phrase (HTAB, SP, VCHAR, obs-text) without "<", as Tornado
# checks since 6.5.3 (older releases put any reason on the status line), and
# without the C1 controls, which some log viewers take for line breaks.
_REASON_PHRASE = re.compile(r"[\t\x20-\x3b\x3d-\x7e\xa0-\xff]+")

# Member names the error documents own; extension members may not use them.
_DEBUG_MEMBER = "exception"
_REQUEST_ID_MEMBER = "request_id"
_RESERVED_MEMBERS = frozenset(
    {"type", "title", "status", "detail", "instance", "message", "traceback"}
    | {_DEBUG_MEMBER, _REQUEST_ID_MEMBER}
)


def _safe_str(value: object) -> str:
    """``str(value)``, or a placeholder when that raises."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} str() failed>"


# Made once: json.dumps() with options builds an encoder on every call.
_JSON_ENCODER = json.JSONEncoder(
    default=_safe_str, allow_nan=False, separators=(",", ":")
)
_JSON_TYPE = "application/json; charset=UTF-8"
_PROBLEM_JSON_TYPE = "application/problem+json"
# The problem flavour of the media types that sprockets.mixins.mediatype
# negotiates; any other negotiated type is announced as it is.
_PROBLEM_TYPES = {
    "application/json": _PROBLEM_JSON_TYPE,
    "application/msgpack": "application/problem+msgpack",
}


class DetailedHTTPError(web.HTTPError):
    """An :class:`~tornado.web.HTTPError` whose detail the client may read.

    :param status_code: the response status
    :param detail: text meant for the client, about this occurrence; it is
        the ``message`` of an :class:`ErrorWriter` document and the
        ``detail`` of a :class:`ProblemDetailsWriter` document
    :param reason: the reason phrase, as for :class:`~tornado.web.HTTPError`
    :param log_message: text for the log only (see :class:`ErrorLogger`);
        it never reaches the client
    :param type_uri: the problem ``type`` URI of a problem details document
        (``about:blank`` when omitted)
    :param title: the problem ``title`` (the reason phrase when omitted)
    :param instance: the problem ``instance`` URI (the request path when
        omitted)
    :param extensions: further members of the document, e.g. the name of the
        field that failed validation; values must be serialisable by the
        chosen media type
    :raises ValueError: when an extension member would replace a member
        the document defines itself (``type``, ``title``, ``status``,
        ``detail``, ``instance``, ``message``, ``traceback``, ``exception``)

    Everything given here except ``log_message`` is sent to the client, in
    production too; plain exceptions and ``HTTPError`` log messages are not.
    Subclass it to give a kind of failure its own name: an
    :class:`ErrorWriter` document's ``type`` is the class name::

        class OutOfStock(DetailedHTTPError):
            pass

        raise OutOfStock(409, "Only 3 left", log_message=f"sku {sku}", left=3)

    .. versionadded:: 3.0.0
    """

    def __init__(
        self,
        status_code: int = 500,
        detail: str | None = None,
        *,
        reason: str | None = None,
        log_message: str | None = None,
        type_uri: str | None = None,
        title: str | None = None,
        instance: str | None = None,
        **extensions: Any,
    ) -> None:
        clashing = sorted(_RESERVED_MEMBERS & extensions.keys())
        if clashing:
            raise ValueError(
                f"extension members {clashing} clash with the document's own members"
            )
        super().__init__(status_code, log_message, reason=reason)
        self.detail = detail
        self.type_uri = type_uri
        self.title = title
        self.instance = instance
        self.extensions = extensions


class _ClassLogger:
    """The logger named after the class it is read from, looked up on use.

    Looked up when a handler first uses it, not when its module is
    imported, so that no logging configuration installed in between can
    disable it.  A class or instance attribute ``logger`` takes its place.
    """

    def __get__(self, instance: object, owner: type) -> logging.Logger:
        return logging.getLogger(owner.__name__)


class LoggingHandler(_Handler):
    """Gives the handler :attr:`logger`, a logger named after its class.

    A ``logger`` that a base class or the handler itself sets (as a class
    attribute, or on ``self``) is kept.

    .. versionadded:: 3.0.0
    """

    logger: logging.Logger = _ClassLogger()  # type: ignore[assignment]
    """The :class:`logging.Logger` named after the handler's class."""


class _SafeStatusLine(_Handler):
    """Keeps a reason that is not a valid reason-phrase off the status line."""

    def set_status(self, status_code: int, reason: str | None = None) -> None:
        """Set the response status, replacing an unusable reason.

        A ``reason`` with a control character (CR and LF included), a ``<``
        or a character outside Latin-1 is not put on the status line, where
        it could split the response: the standard phrase for
        ``status_code`` (``Unknown`` for a non-standard code) goes there
        instead.  An error document still shows the reason as given.

        .. versionadded:: 3.0.0
        """
        if reason is not None and not (
            isinstance(reason, str) and _REASON_PHRASE.fullmatch(reason)
        ):
            reason = None
        super().set_status(status_code, reason)


class ErrorLogger(LoggingHandler, _SafeStatusLine):
    """Logs each error response once, as ``METHOD URI failed with STATUS: REASON``.

    The line goes to :attr:`~LoggingHandler.logger` at WARNING for 4xx and
    at ERROR for 5xx.  ``REASON`` is the first of: the ``log_message``
    passed to :meth:`send_error`; the log message of the
    :class:`~tornado.web.HTTPError` that was raised; the detail of a
    :class:`DetailedHTTPError`; the HTTPError's reason; the reason passed to
    :meth:`send_error`; the standard phrase of the status; ``Unknown``.  The
    method, URI and reason have their control characters escaped, so no
    client can forge a log line.

    A 5xx caused by an exception other than an HTTPError (or by an
    HTTPError raised while handling another exception) is logged with its
    traceback, on this line only: Tornado's own "Uncaught exception" record
    is not written for it.  An exception raised after the response was
    finished, when no error response can follow, is logged on its own line
    with its traceback.

    .. versionadded:: 3.0.0
    """

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Log the failure, then send the error response.

        :param status_code: the response status
        :param kwargs: as for :meth:`tornado.web.RequestHandler.send_error`;
            ``log_message`` is logged and never sent to the client

        .. versionadded:: 3.0.0
        """
        level = logging.ERROR if status_code >= 500 else logging.WARNING
        # A dictConfig() that ran after the logger was made has disabled
        # it; failures must still be logged.
        self.logger.disabled = False
        if self.logger.isEnabledFor(level):
            try:
                self._log_failure(level, status_code, kwargs)
            except Exception:  # logging must not keep the response from going
                _LOGGER.exception("Could not log the failure of a request")
        super().send_error(status_code, **kwargs)

    def _log_failure(
        self, level: int, status_code: int, kwargs: dict[str, Any]
    ) -> None:
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        message = kwargs.get("log_message")
        if not message and isinstance(error, web.HTTPError):
            message = _formatted_log_message(error)
            if not message and isinstance(error, DetailedHTTPError):
                message = error.detail
        if not message:
            message = _reason(status_code, error, kwargs)
        with_traceback = (
            level >= logging.ERROR
            and error is not None
            and (not isinstance(error, web.HTTPError) or _is_chained(error))
        )
        self.logger.log(
            level,
            "%s %s failed with %d: %s",
            _logtext.escape(self.request.method or "-"),
            _logtext.escape(self.request.uri or "-"),
            status_code,
            _logtext.escape(str(message)),
            exc_info=exc_info if with_traceback else None,
        )

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Log an exception that no error response will report.

        Tornado calls this for every uncaught exception, then
        :meth:`send_error` unless the response is already finished;
        :meth:`send_error` logs the failure, so only an exception raised
        after the response was finished is logged here.

        .. versionadded:: 3.0.0
        """
        if not self._finished:
            return
        self.logger.disabled = False
        self.logger.error(
            "%s %s failed after its response was finished",
            _logtext.escape(self.request.method or "-"),
            _logtext.escape(self.request.uri or "-"),
            exc_info=(typ, value, tb),  # type: ignore[arg-type]
        )


class _DocumentWriter(_SafeStatusLine):
    """Writes an error document, negotiated when the handler can negotiate."""

    _json_content_type = _JSON_TYPE

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Write the error document; never raises, never leaves the body empty.

        :param status_code: the response status
        :param kwargs: as passed to :meth:`send_error`, ``exc_info`` and
            ``reason`` included

        When the handler has a ``send_response`` method (that of
        :class:`sprockets.mixins.mediatype.content.ContentMixin`, or its
        own), the document goes through it, so with ``ContentMixin`` the
        ``Accept`` header picks the media type; when that fails (malformed
        or unsatisfiable ``Accept``, no transcoder), the document is sent as
        JSON with the same status.  Responses that may not have a body
        (1xx, 204, 304) get none.

        .. versionadded:: 3.0.0
        """
        if status_code in (204, 304) or 100 <= status_code < 200:
            return
        try:
            document = self._error_document(status_code, kwargs)
        except Exception:
            _LOGGER.exception("Could not build the error document for %d", status_code)
            document = self._minimal_document(status_code)
        try:
            if not self._send_negotiated(document):
                self._send_json(status_code, document)
        except Exception:
            _LOGGER.exception("Could not write the error document for %d", status_code)

    def _error_document(
        self, status_code: int, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def _minimal_document(self, status_code: int) -> dict[str, Any]:
        raise NotImplementedError

    def _negotiated_content_type(self, negotiated: str) -> str | None:
        """The Content-Type for ``negotiated``; None keeps the transcoder's."""
        return None

    def _send_negotiated(self, document: dict[str, Any]) -> bool:
        send_response = getattr(self, "send_response", None)
        if not callable(send_response):
            return False
        try:
            send_response(document)
        except Exception as error:
            # A bad Accept header is the client's failure, not the service's:
            # answer in JSON and keep the log quiet.
            _LOGGER.debug("Error document sent as JSON: %r", error)
            return False
        negotiated = getattr(self, "get_response_content_type", None)
        if callable(negotiated):
            content_type = self._negotiated_content_type(negotiated())
            if content_type is not None:
                self.set_header("Content-Type", content_type)
        return True

    def _send_json(self, status_code: int, document: dict[str, Any]) -> None:
        try:
            body = _JSON_ENCODER.encode(document)
        except (TypeError, ValueError):  # e.g. a NaN or a cycle in extensions
            _LOGGER.exception("Could not encode the error document for %d", status_code)
            body = json.dumps(self._minimal_document(status_code))
        self.set_header("Content-Type", self._json_content_type)
        self.write(body.encode())


class ErrorWriter(_DocumentWriter):
    """Answers errors with ``{"type": ..., "message": ..., "traceback": ...}``.

    In production (``serve_traceback`` off):

    * for an :class:`~tornado.web.HTTPError` (subclasses included), ``type``
      is its class name and ``message`` its reason (the standard phrase
      when it has none, ``Unknown`` for a non-standard code), or the detail
      of a :class:`DetailedHTTPError`;
    * for any other exception, ``type`` is null and ``message`` is the
      standard phrase of the status;
    * for :meth:`send_error` without an exception, ``type`` is null and
      ``message`` the ``reason`` passed, else the standard phrase;
    * ``traceback`` is null.

    With ``serve_traceback`` on, ``type`` is the class name of any
    exception, ``message`` its text, and ``traceback`` the list of lines of
    its formatted traceback.  A ``log_message`` is never the ``message``.
    A :class:`DetailedHTTPError`'s extension members are added to the
    document.  When the request has an id (it does in a
    :class:`sprockets_http.app.Application`, see
    :mod:`sprockets_http.context`), ``request_id`` holds it, so a client
    can quote it to whoever reads the logs.

    The document is JSON (``application/json; charset=UTF-8``), or whatever
    ``Accept`` chooses when the handler has
    :class:`sprockets.mixins.mediatype.ContentMixin`.

    .. versionadded:: 3.0.0
    """

    def _error_document(
        self, status_code: int, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        debug = bool(self.settings.get("serve_traceback"))
        type_name, message = _describe(
            error, _reason(status_code, error, kwargs), debug
        )
        document: dict[str, Any] = {
            "type": type_name,
            "message": message,
            "traceback": _traceback_lines(exc_info) if debug and exc_info else None,
        }
        _add_request_id(document, self.request)
        if isinstance(error, DetailedHTTPError):
            _add_extensions(document, error.extensions)
        return document

    def _minimal_document(self, status_code: int) -> dict[str, Any]:
        return {"type": None, "message": _phrase(status_code), "traceback": None}


class ProblemDetailsWriter(_DocumentWriter):
    """Answers errors with an RFC 9457 problem details document.

    The members are:

    ``type``
        the ``type_uri`` of a :class:`DetailedHTTPError`, else
        ``about:blank``
    ``title``
        the ``title`` of a :class:`DetailedHTTPError`, else the reason, as
        an :class:`ErrorWriter` ``message`` in production
    ``status``
        the response status
    ``detail``
        only when deliberately given: the detail of a
        :class:`DetailedHTTPError`
    ``instance``
        the ``instance`` of a :class:`DetailedHTTPError`, else the request
        path (without the query)
    ``request_id``
        an extension member: the request's id, when it has one (it does in
        a :class:`sprockets_http.app.Application`, see
        :mod:`sprockets_http.context`); ``instance`` keeps naming the
        resource, as RFC 9457 suggests
    extension members
        those of a :class:`DetailedHTTPError`; with ``serve_traceback`` on,
        ``exception`` holds the ``type``, ``message`` and ``traceback`` of
        the exception, as an :class:`ErrorWriter` document would in debug
        mode

    The document is ``application/problem+json``.  With
    :class:`sprockets.mixins.mediatype.ContentMixin` in the handler,
    ``Accept`` chooses: negotiated JSON is announced as
    ``application/problem+json``, msgpack as ``application/problem+msgpack``,
    any other type as negotiated.

    .. versionadded:: 3.0.0
    """

    _json_content_type = _PROBLEM_JSON_TYPE

    def _error_document(
        self, status_code: int, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        reason = _reason(status_code, error, kwargs)
        if isinstance(error, DetailedHTTPError):
            document: dict[str, Any] = {
                "type": error.type_uri or "about:blank",
                "title": error.title or reason,
                "status": status_code,
            }
            if error.detail is not None:
                document["detail"] = error.detail
            document["instance"] = error.instance or self.request.path
            _add_request_id(document, self.request)
            _add_extensions(document, error.extensions)
        else:
            document = {
                "type": "about:blank",
                "title": reason,
                "status": status_code,
                "instance": self.request.path,
            }
            _add_request_id(document, self.request)
        if error is not None and self.settings.get("serve_traceback"):
            type_name, message = _describe(error, reason, debug=True)
            document[_DEBUG_MEMBER] = {
                "type": type_name,
                "message": message,
                "traceback": _traceback_lines(exc_info),
            }
        return document

    def _minimal_document(self, status_code: int) -> dict[str, Any]:
        return {
            "type": "about:blank",
            "title": _phrase(status_code),
            "status": status_code,
        }

    def _negotiated_content_type(self, negotiated: str) -> str | None:
        return _PROBLEM_TYPES.get(negotiated)


def _phrase(status_code: int) -> str:
    return http.client.responses.get(status_code, "Unknown")


def _reason(
    status_code: int, error: BaseException | None, kwargs: dict[str, Any]
) -> str:
    """The reason as Tornado's send_error picks it, before any sanitising."""
    given: str | None = kwargs.get("reason")
    if isinstance(error, web.HTTPError) and error.reason:
        given = error.reason
    return given or _phrase(status_code)


def _describe(
    error: BaseException | None, reason: str, debug: bool
) -> tuple[str | None, str]:
    """The ``type`` and ``message`` a client may see for ``error``."""
    if isinstance(error, web.HTTPError):
        if isinstance(error, DetailedHTTPError) and error.detail is not None:
            return type(error).__name__, error.detail
        return type(error).__name__, reason
    if error is not None and debug:
        return type(error).__name__, _safe_str(error) or reason
    return None, reason


def _traceback_lines(exc_info: Any) -> list[str] | None:
    try:
        return "".join(traceback.format_exception(*exc_info)).splitlines()
    except Exception:
        _LOGGER.debug("Could not format a traceback", exc_info=True)
        return None


def _formatted_log_message(error: web.HTTPError) -> str | None:
    # HTTPError.log_message doubles "%" when there are no arguments, so it is
    # a format string; one that does not fit its arguments is logged as is.
    message = error.log_message
    if not message:
        return None
    try:
        return message % error.args
    except (TypeError, ValueError):
        return message


def _is_chained(error: BaseException) -> bool:
    """Whether ``error`` was raised while handling, or from, another one."""
    return error.__cause__ is not None or (
        error.__context__ is not None and not error.__suppress_context__
    )


def _add_request_id(document: dict[str, Any], request: Any) -> None:
    request_id = context.request_id_of(request)
    if request_id is not None:
        document[_REQUEST_ID_MEMBER] = request_id


def _add_extensions(document: dict[str, Any], extensions: dict[str, Any]) -> None:
    for name, value in extensions.items():
        document.setdefault(name, value)
