"""The logging set-up :func:`sprockets_http.run` installs by default.

Two formats, chosen by the ``log_format`` setting, the ``LOG_FORMAT``
environment variable or ``--log-format`` (see :data:`LOG_FORMAT`); by
default ``text`` when standard error is a terminal, ``json`` otherwise:

``text``
    One readable line per record, for a developer's terminal: time, level,
    pid, logger and message, then the record's fields as ``key=value``
    (see :class:`TextFormatter`).
``json``
    One JSON object per line, for log collectors (see
    :class:`JSONFormatter`).  Every record carries ``timestamp``, ``level``,
    ``logger``, ``message`` and ``pid``, plus ``service`` and
    ``environment`` when the ``SERVICE`` and ``ENVIRONMENT`` environment
    variables are set, ``request_id`` while a request is handled,
    ``exception`` (the formatted traceback) when there is one, and every
    field given with ``extra=``.  A record never spans several lines.

Whatever configuration is installed, the loggers of ``sprockets_http``, of
Tornado (the access log, ``tornado.application``...) and of asyncio stay
enabled: see :func:`enable_library_loggers`.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Iterable
from typing import Any, Literal, TextIO

from sprockets_http import _logtext

LogFormat = Literal["text", "json"]

FORMATS: tuple[LogFormat, ...] = ("json", "text")
"""The values of the ``log_format`` setting.

.. versionadded:: 3.0.0
"""

# Made once: json.dumps() with options builds an encoder on every call.
# Values JSON cannot hold are written as their repr().
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, default=repr, separators=(",", ":")
)
_string = json.encoder.encode_basestring  # a JSON string, non-ASCII kept

# Left raw by the encoder, yet line breaks to str.splitlines() and to some
# log shippers.
_LINE_BREAKS = str.maketrans(
    {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)

# Loggers under these names are re-enabled by enable_library_loggers().
_LIBRARY_LOGGERS = ("sprockets_http", "tornado", "asyncio")

# What every LogRecord has; anything else was given with extra= (or added
# by a filter) and is a field of the record.  request_id is written apart.
_BORN_WITH = tuple(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_STANDARD_ATTRIBUTES = frozenset(
    {*_BORN_WITH, "message", "asctime", "request_id", "fields_in_message"}
)
# LogRecord.__init__ sets these first, in this order; fields come after.
_FIRST_FIELD = len(_BORN_WITH)

TEXT_FORMAT = "%(asctime)s %(levelname)-8s [%(process)d] %(name)s: %(message)s"
"""The :class:`logging.Formatter` format of the ``text`` log format."""


def record_fields(record: logging.LogRecord) -> Iterable[tuple[str, Any]]:
    """The fields of ``record`` beyond the standard attributes, in order.

    Those given with ``extra=``, or set by a filter, then ``request_id``
    when it is not :data:`None`.

    .. versionadded:: 3.0.0
    """
    return _fields(record.__dict__)


def _fields(attributes: dict[str, Any]) -> list[tuple[str, Any]]:
    fields = [
        (name, value)
        for name, value in itertools.islice(attributes.items(), _FIRST_FIELD, None)
        if name not in _STANDARD_ATTRIBUTES
    ]
    request_id = attributes.get("request_id")
    if request_id is not None:
        fields.append(("request_id", request_id))
    return fields


class JSONFormatter(logging.Formatter):
    """Format each record as one line of JSON.

    :param service: added to every record as ``service`` when not empty;
        defaults to the ``SERVICE`` environment variable
    :param environment: added as ``environment`` when not empty; defaults
        to the ``ENVIRONMENT`` environment variable

    Fields come after the standard members (see :func:`record_fields`); one
    whose name is already taken, e.g. ``extra={"level": ...}``, is written
    as ``extra_level``.  A value JSON cannot hold (an object, a set, a NaN)
    is written as its ``repr()``.
    """

    def __init__(
        self, service: str | None = None, environment: str | None = None
    ) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""
        self._static: dict[str, str] = {}
        service = os.environ.get("SERVICE") if service is None else service
        environment = (
            os.environ.get("ENVIRONMENT") if environment is None else environment
        )
        if service:
            self._static["service"] = service
        if environment:
            self._static["environment"] = environment
        self._static_json = "".join(
            f",{_string(name)}:{_string(value)}" for name, value in self._static.items()
        )
        # Members a field may not replace: it is written as extra_NAME.
        self._taken = frozenset(
            {"timestamp", "level", "logger", "message", "pid", "exception", "stack"}
            | self._static.keys()
        )

    def format(self, record: logging.LogRecord) -> str:
        # The members every record has are written directly; encoding them
        # as a dictionary took a fifth longer, on every record.
        head = (
            f'{{"timestamp":"{self._timestamp(record.created)}",'
            f'"level":{_string(record.levelname)},"logger":{_string(record.name)},'
            f'"message":{_string(record.getMessage())},"pid":{record.process}'
            f"{self._static_json}"
        )
        rest: dict[str, Any] = {}
        for name, value in _fields(record.__dict__):
            rest["extra_" + name if name in self._taken else name] = value
        if record.exc_info:
            rest["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            rest["exception"] = record.exc_text
        if record.stack_info:
            rest["stack"] = self.formatStack(record.stack_info)
        if rest:
            try:
                tail = _ENCODER.encode(rest)
            except (TypeError, ValueError, RecursionError):  # NaN, a cycle...
                tail = _ENCODER.encode(_json_safe(rest))
            line = f"{head},{tail[1:]}"
        else:
            line = head + "}"
        if not line.isascii():
            line = line.translate(_LINE_BREAKS)
        return line

    def _timestamp(self, created: float) -> str:
        # Records come many per second: format each second once.
        second = int(created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int(created % 1 * 1000):03d}Z"


def _json_safe(document: dict[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = {}
    for name, value in document.items():
        try:
            _ENCODER.encode(value)
        except (TypeError, ValueError, RecursionError):
            value = repr(value)
        safe[name] = value
    return safe


class TextFormatter(logging.Formatter):
    """Format each record as a readable line, its fields as ``key=value``.

    The line is :data:`TEXT_FORMAT`, then each field of
    :func:`record_fields` as `` key=value``; a value with a space, a quote
    or a control character is quoted and escaped.  A traceback follows on
    the next lines.  Fields a record already shows in its message (an
    access record's) are not repeated.

    .. versionadded:: 3.0.0
    """

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        shown: Iterable[str] = getattr(record, "fields_in_message", ())
        fields = [
            f" {name}={_text_value(value)}"
            for name, value in record_fields(record)
            if name not in shown
        ]
        return line + "".join(fields) if fields else line


def _text_value(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    escaped = _logtext.escape(text)
    if escaped != text or not text or " " in text:
        return f'"{escaped}"'
    return text


def default_format(stream: TextIO | None = None) -> LogFormat:
    """``text`` when ``stream`` (default: standard error) is a terminal, else ``json``.

    .. versionadded:: 3.0.0
    """
    stream = sys.stderr if stream is None else stream
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no stream, or a closed one
        return "json"


def default_config(
    debug: bool = False, log_format: LogFormat | None = None
) -> dict[str, Any]:
    """Build the :func:`logging.config.dictConfig` configuration ``run`` uses.

    :param debug: log at DEBUG instead of INFO
    :param log_format: ``text`` or ``json``; :data:`None` picks
        :func:`default_format`
    :raises ValueError: for any other ``log_format``

    Records go to standard error.  Loggers that exist already keep working.
    """
    if log_format is None:
        log_format = default_format()
    if log_format == "text":
        formatter: dict[str, Any] = {"()": TextFormatter}
    elif log_format == "json":
        formatter = {"()": JSONFormatter}
    else:
        raise ValueError(f"log format must be 'text' or 'json', not {log_format!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {
            "level": "DEBUG" if debug else "INFO",
            "handlers": ["console"],
        },
    }


def enable_library_loggers() -> None:
    """Re-enable the loggers of ``sprockets_http``, Tornado and asyncio.

    :func:`logging.config.dictConfig` disables every logger that exists
    when it runs and that its configuration does not name, unless told
    ``disable_existing_loggers: False``.  Those loggers are created when
    their modules are imported, so a service that configures logging
    itself would silently lose the access log, the runner's lines and
    Tornado's own error reports.  The runner calls this after installing
    ``log_config``, after the application factory and after each lifecycle
    step, the places where a service configures logging.  Use levels, not
    ``disabled``, to quiet these loggers.

    .. versionadded:: 3.0.0
    """
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (
            isinstance(logger, logging.Logger)
            and logger.disabled
            and name.partition(".")[0] in _LIBRARY_LOGGERS
        ):
            logger.disabled = False
