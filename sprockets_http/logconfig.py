"""The logging set-up :func:`sprockets_http.run` installs by default.

Two formats:

``text``
    One readable line per record, for a developer's terminal; the default
    in debug mode.
``json``
    One JSON object per line, for log collectors; the default otherwise.
    Every record carries ``timestamp``, ``level``, ``logger``, ``message``
    and ``pid``, plus ``service`` and ``environment`` when the ``SERVICE``
    and ``ENVIRONMENT`` environment variables are set, and ``exception``
    (the formatted traceback) when there is one.  A traceback never spans
    several lines of output.

Whatever configuration is installed, the loggers of ``sprockets_http``, of
Tornado (the access log, ``tornado.application``...) and of asyncio stay
enabled: see :func:`enable_library_loggers`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Literal

LogFormat = Literal["text", "json"]

# Made once: json.dumps() with options builds an encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)

# Loggers under these names are re-enabled by enable_library_loggers().
_LIBRARY_LOGGERS = ("sprockets_http", "tornado", "asyncio")

TEXT_FORMAT = "%(asctime)s %(levelname)-8s [%(process)d] %(name)s: %(message)s"
"""The :class:`logging.Formatter` format of the ``text`` log format."""


class JSONFormatter(logging.Formatter):
    """Format each record as one line of JSON.

    :param service: added to every record as ``service`` when not empty;
        defaults to the ``SERVICE`` environment variable
    :param environment: added as ``environment`` when not empty; defaults
        to the ``ENVIRONMENT`` environment variable
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

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "timestamp": self._timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
            **self._static,
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return _ENCODER.encode(document)

    def _timestamp(self, created: float) -> str:
        # Records come many per second: format each second once.
        second = int(created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int(created % 1 * 1000):03d}Z"


def default_config(
    debug: bool = False, log_format: LogFormat | None = None
) -> dict[str, Any]:
    """Build the :func:`logging.config.dictConfig` configuration ``run`` uses.

    :param debug: log at DEBUG instead of INFO, and default to ``text``
    :param log_format: ``text`` or ``json``; :data:`None` picks by ``debug``
    :raises ValueError: for any other ``log_format``

    Records go to standard error.  Loggers that exist already keep working.
    """
    if log_format is None:
        log_format = "text" if debug else "json"
    if log_format == "text":
        formatter: dict[str, Any] = {"format": TEXT_FORMAT}
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
