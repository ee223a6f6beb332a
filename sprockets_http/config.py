"""The runner's own settings: where each comes from and what it accepts.

Every option of the runner is an :class:`Option`: a setting of
:func:`sprockets_http.run`, an environment variable, and a flag of the
command line (see :mod:`sprockets_http.__main__`), all read and checked by
the same code.  A value is looked up, first found wins:

1. the ``settings`` given to :func:`sprockets_http.run` (where the
   command-line flags put theirs);
2. for options that :attr:`Option.per_application` allows, the settings of
   the application the factory returned;
3. the environment variable;
4. the default.

A malformed value in ``settings`` raises :class:`ValueError`; one in the
environment raises :class:`EnvironmentValueError`, which
:func:`sprockets_http.run` reports as a usage error (exit status 2).

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from sprockets_http import _cpus, forwarded, listen, pidfile

T = TypeVar("T")

USAGE_ERROR = 2
"""Exit status for a malformed setting in the environment or command line."""

LOGGER = logging.getLogger("sprockets_http.config")


class EnvironmentValueError(ValueError):
    """An environment variable holds a value its option does not accept.

    The message names the variable, what it must be and the value found.

    .. versionadded:: 3.0.0
    """


@dataclasses.dataclass(frozen=True)
class Option(Generic[T]):
    """One runner setting.

    :param name: the key in the settings, e.g. ``shutdown_limit``
    :param convert: turns a value (text from the environment or the command
        line, or any value from settings) into the option's type; raises
        :class:`ValueError` saying what the value must be, e.g.
        ``"must be a number of seconds"``
    :param default: the value when nothing sets it
    :param help: one line for ``--help``
    :param per_application: whether the application's own settings may set
        it (for options each serving process reads after the factory ran)
    :param metavar: the placeholder in ``--help``
    :param repeatable: the command-line flag may be given several times,
        each adding to the value (a tuple), as a comma in the value does
    :param default_text: the default as ``--help`` shows it, when the
        value itself does not read well
    """

    name: str
    convert: Callable[[Any], T]
    default: T
    help: str
    per_application: bool = False
    metavar: str | None = None
    repeatable: bool = False
    default_text: str | None = None

    @property
    def variable(self) -> str:
        """The environment variable: the name in capitals."""
        return self.name.upper()

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--shutdown-limit``."""
        return "--" + self.name.replace("_", "-")

    def check(self, value: object) -> T:
        """Convert a value given in settings.

        :raises ValueError: naming the setting and the value
        """
        try:
            return self.convert(value)
        except ValueError as error:
            raise ValueError(f"{self.name} {error}, not {value!r}") from None

    def resolve(
        self,
        settings: Mapping[str, Any],
        application_settings: Mapping[str, Any] | None = None,
    ) -> T:
        """The value, from the first place that sets it (see the module docs).

        :raises ValueError: for a malformed value in ``settings`` or
            ``application_settings``
        :raises EnvironmentValueError: for a malformed environment variable
        """
        sources = [settings]
        if self.per_application and application_settings is not None:
            sources.append(application_settings)
        for source in sources:
            if source.get(self.name) is not None:
                return self.check(source[self.name])
        text = os.environ.get(self.variable, "")
        if not text.strip():
            return self.default
        try:
            return self.convert(text)
        except ValueError as error:
            raise EnvironmentValueError(
                f"{self.variable} {error}, not {text!r}"
            ) from None


def flag(value: object) -> bool:
    """A switch: a bool, an integer (non-zero is on), or on/off words.

    :raises ValueError: for anything else
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    try:
        return int(text) != 0
    except ValueError:
        raise ValueError(
            "must be on or off (1, true, yes, on / 0, false, no, off)"
        ) from None


def seconds(value: object) -> float:
    """A duration: a finite number of seconds, 0 or more."""
    number = _number(float, value, "must be a number of seconds")
    if not (number >= 0 and math.isfinite(number)):  # NaN fails both
        raise ValueError("must be a number of seconds (0 or more)")
    return number


def port(value: object) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    number = _number(int, value, "must be a port number")
    if not 0 <= number <= 65535:
        raise ValueError("must be a port number (0 to 65535)")
    return number


def count(value: object) -> int:
    """A whole number, 0 or more."""
    number = _number(int, value, "must be a whole number")
    if number < 0:
        raise ValueError("must be a whole number (0 or more)")
    return number


def choice(*choices: str) -> Callable[[object], str]:
    """A converter that accepts one of ``choices`` (any case, spaces around).

    :returns: a function that returns the choice, or raises
        :class:`ValueError` naming the choices

    .. versionadded:: 3.0.0
    """

    def convert(value: object) -> str:
        text = str(value).strip().lower()
        if text in choices:
            return text
        raise ValueError("must be one of " + ", ".join(choices))

    return convert


def file_mode(value: object) -> int:
    """File permissions: octal text such as ``660``, or an integer (``0o660``)."""
    message = "must be file permissions in octal, such as 660"
    if isinstance(value, bool):
        raise ValueError(message)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        try:
            number = int(text, 8)
        except ValueError:
            raise ValueError(message) from None
    else:
        raise ValueError(message)
    if not 0 <= number <= 0o777:
        raise ValueError(message)
    return number


def process_count(number_of_procs: int, debug: bool) -> int:
    """How many processes to run for the ``number_of_procs`` setting.

    :param number_of_procs: 0 for one per CPU this process may use: those
        its affinity allows, fewer when a cgroup CPU quota (a
        container's CPU limit, cgroup v2 or v1) gives less time, rounded
        up; else the count
    :param debug: debug mode always runs one process
    :raises ValueError: when ``number_of_procs`` is negative

    With 0, one INFO line says what was found, e.g. ``2 workers: 2 CPUs
    available (affinity 2, cgroup quota none)``.

    .. versionadded:: 3.0.0
    """
    if number_of_procs < 0:
        raise ValueError(f"number_of_procs must be 0 or more, not {number_of_procs}")
    if debug:
        return 1
    if number_of_procs:
        return number_of_procs
    cpus = _cpus.available()
    LOGGER.info("%d worker%s: %s", cpus.count, "" if cpus.count == 1 else "s", cpus)
    return cpus.count


def _number(kind: Callable[[Any], T], value: object, message: str) -> T:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(message)
    try:
        return kind(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise ValueError(message) from None


PORT = Option("port", port, 8000, "TCP port to listen on, every interface", metavar="N")
BIND: Option[tuple[listen.Address, ...]] = Option(
    "bind",
    listen.addresses,
    (),
    "where to listen instead of --port: HOST:PORT, [IPV6]:PORT, unix:PATH or "
    "fd://N; repeatable",
    metavar="ADDRESS",
    repeatable=True,
    default_text="--port",
)
UNIX_SOCKET_MODE = Option(
    "unix_socket_mode",
    file_mode,
    0o660,
    "permissions of the unix socket files --bind creates",
    metavar="MODE",
    default_text="660",
)
FORWARDED_ALLOW_IPS = Option(
    "forwarded_allow_ips",
    forwarded.AllowList.parse,
    forwarded.LOOPBACK,
    "proxies whose X-Forwarded-For/-Proto are believed: addresses and "
    "networks, comma-separated, or *",
    per_application=True,
    metavar="ADDRESSES",
)
PID_FILE = Option(
    "pid_file",
    pidfile.path,
    None,
    "write the main process's pid to this file",
    metavar="FILE",
    default_text="none",
)
NUMBER_OF_PROCS = Option(
    "number_of_procs",
    count,
    0,
    "worker processes; 0 for one per CPU this process may use",
    metavar="N",
)
DEBUG = Option("debug", flag, False, "Tornado's debug mode, one process, readable logs")
SHUTDOWN_DELAY = Option(
    "shutdown_delay",
    seconds,
    0.0,
    "keep serving this long after SIGTERM while the health check fails",
    per_application=True,
    metavar="SECONDS",
)
SHUTDOWN_LIMIT = Option(
    "shutdown_limit",
    seconds,
    5.0,
    "how long in-flight requests, and each shutdown step, may take once stopping",
    per_application=True,
    metavar="SECONDS",
)
REUSE_PORT = Option(
    "reuse_port",
    flag,
    False,
    "share the port with other processes that ask for it too",
)

LOG_FORMAT: Option[str | None] = Option(
    "log_format",
    choice("json", "text"),
    None,
    "log records as JSON lines or readable text lines",
    metavar="json|text",
    default_text="text when stderr is a terminal, else json",
)
LOOP = Option(
    "loop",
    choice("auto", "asyncio", "uvloop"),
    "auto",
    "the event loop: asyncio, uvloop, or auto (uvloop when installed)",
    metavar="auto|asyncio|uvloop",
)
ACCESS_LOG_QUERY = Option(
    "access_log_query",
    flag,
    False,
    "show the query string in access log records (it may hold secrets)",
    per_application=True,
)
WORKER_TIMEOUT = Option(
    "worker_timeout",
    seconds,
    30.0,
    "replace a worker whose event loop is blocked this long, after logging "
    "its stacks; 0 never",
    metavar="SECONDS",
)
MAX_REQUESTS = Option(
    "max_requests",
    count,
    0,
    "replace a worker once it has served this many requests; 0 never",
    metavar="N",
)
MAX_REQUESTS_JITTER = Option(
    "max_requests_jitter",
    count,
    0,
    "add a random 0 to N to each worker's max_requests",
    metavar="N",
)

RUN_OPTIONS: tuple[Option[Any], ...] = (
    PORT,
    BIND,
    UNIX_SOCKET_MODE,
    NUMBER_OF_PROCS,
    SHUTDOWN_DELAY,
    SHUTDOWN_LIMIT,
    REUSE_PORT,
    FORWARDED_ALLOW_IPS,
    PID_FILE,
    WORKER_TIMEOUT,
    MAX_REQUESTS,
    MAX_REQUESTS_JITTER,
    LOG_FORMAT,
    LOOP,
)
"""The options :func:`sprockets_http.run` takes out of its settings.

The factory is called with the other settings (and ``debug``), as
``sprockets.http`` called it.
"""
