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
import math
import os
import sys
import time
from collections.abc import Iterable
from typing import Any, Literal, TextIO

from sprockets_http import _logtext
from sprockets_http._logtext import THREE_DIGITS

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
# How many field names a JSONFormatter remembers the JSON text of; a bound,
# for a program that makes up names as it goes.
_KEYS_KEPT = 1000

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
    as ``extra_level`` (unless the record has an ``extra_level`` field of
    its own, which is written instead).  A value JSON cannot hold (an
    object, a set, a NaN) is written as its ``repr()``.
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
        # The text before each field's value, by name; "" for the standard
        # attributes, which are not fields (one lookup tells both).
        self._keys: dict[str, str] = dict.fromkeys(_STANDARD_ATTRIBUTES, "")

    def _key(self, name: str, attributes: dict[str, Any]) -> str | None:
        """The text before the field ``name``'s value, ``,"name":``.

        :returns: :data:`None` for a field not to write: a taken name whose
            ``extra_`` name the record has as a field of its own

        Remembered for the first :data:`_KEYS_KEPT` names that are not taken:
        fields come by the same few names, record after record.
        """
        if name in self._taken:
            renamed = "extra_" + name
            return None if renamed in attributes else f",{_string(renamed)}:"
        key = f",{_string(name)}:"
        if len(self._keys) < len(_STANDARD_ATTRIBUTES) + _KEYS_KEPT:
            self._keys[name] = key
        return key

    def format(self, record: logging.LogRecord) -> str:
        # The members every record has are written directly; encoding them
        # as a dictionary took a fifth longer, on every record.  Records
        # come many a second: each second is formatted once, and the
        # milliseconds are looked up.
        created = record.created
        second = int(created)
        if second != self._second:
            self._new_second(second)
        members = [
            f'{{"timestamp":"{self._second_text}.'
            f'{THREE_DIGITS[int((created - second) * 1000)]}Z",'
            f'"level":{_string(record.levelname)},"logger":{_string(record.name)},'
            f'"message":{_string(record.getMessage())},"pid":{record.process}'
            f"{self._static_json}"
        ]
        # The fields are written one by one too, those of the common types
        # without the encoder: JSONEncoder.encode() builds a new C encoder
        # at every call, which cost more than the writing.  The loop is
        # record_fields(), inlined: it runs for every record.
        attributes = record.__dict__
        keys = self._keys
        for name, value in itertools.islice(attributes.items(), _FIRST_FIELD, None):
            key = keys.get(name)
            if key is None:
                key = self._key(name, attributes)
            if key:
                kind = type(value)
                members.append(key)
                members.append(
                    _string(value)
                    if kind is str
                    else repr(value)
                    if kind is int
                    else _json(value)
                )
        request_id = attributes.get("request_id")
        if request_id is not None:
            members.append(',"request_id":')
            members.append(
                _string(request_id) if type(request_id) is str else _json(request_id)
            )
        if record.exc_info:
            exception = self.formatException(record.exc_info)
            members.append(f',"exception":{_string(exception)}')
        elif record.exc_text:
            members.append(f',"exception":{_string(record.exc_text)}')
        if record.stack_info:
            members.append(f',"stack":{_string(self.formatStack(record.stack_info))}')
        members.append("}")
        line = "".join(members)
        if not line.isascii():
            line = line.translate(_LINE_BREAKS)
        return line

    def _new_second(self, second: int) -> None:
        self._second = second
        self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _json(value: Any) -> str:
    """``value`` as JSON; a value JSON cannot hold, as the string of its repr()."""
    kind = type(value)
    if kind is str:
        return _string(value)
    # int.__repr__ and float.__repr__ are what the encoder writes.
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)
    if value is None:
        return "null"
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError):  # NaN, a cycle...
        return _string(repr(value))


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
