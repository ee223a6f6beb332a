"""The command line: serve an application factory named on it.

::

    python -m sprockets_http [options] MODULE:CALLABLE
    sprockets-http [options] MODULE:CALLABLE

``MODULE:CALLABLE`` names the application factory, which is called as
:func:`sprockets_http.run` calls it.  Options beat environment variables,
which beat defaults.  A mistake on the command line (an unknown module or
attribute, an unreadable env file, a port that is not a number...) exits
with status 2 and one line on standard error; an error raised while the
factory's module is imported is the application's own and shows its
traceback.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import dotenv

import sprockets_http
from sprockets_http import logconfig

_Number = TypeVar("_Number", int, float)

USAGE_ERROR = 2
"""Exit status of a command line that cannot be carried out (as argparse)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage too; one line is easier to spot in
        # a container's log.
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; the ``sprockets-http`` console script.

    :param argv: the arguments; :data:`None` takes :data:`sys.argv`
    :raises SystemExit: 2 for a usage error, else as :func:`sprockets_http.run`

    .. versionadded:: 3.0.0
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.env_file is not None:
        _load_env_file(parser, args.env_file, args.env_override)
    factory = _load_factory(parser, args.factory)
    settings: dict[str, Any] = {}
    if args.port is not None:
        settings["port"] = args.port
    if args.procs is not None:
        settings["number_of_procs"] = args.procs
    if args.debug:
        settings["debug"] = True
    if args.shutdown_delay is not None:
        settings["shutdown_delay"] = args.shutdown_delay
    if args.shutdown_limit is not None:
        settings["shutdown_limit"] = args.shutdown_limit
    # The same rule run() applies to the DEBUG environment variable.
    debug = args.debug or sprockets_http._flag(os.environ.get("DEBUG"))
    sprockets_http.run(
        factory, settings, logconfig.default_config(debug, args.log_format)
    )


def _build_parser() -> _Parser:
    if os.path.basename(sys.argv[0]) == "__main__.py":
        prog = "python -m sprockets_http"
    else:
        prog = os.path.basename(sys.argv[0]) or "sprockets-http"
    parser = _Parser(
        prog=prog,
        description="Serve the Tornado application that MODULE:CALLABLE creates "
        "until SIGTERM or SIGINT.",
        epilog="Options beat environment variables, which beat defaults.",
    )
    parser.add_argument(
        "factory",
        metavar="MODULE:CALLABLE",
        help="the application factory, e.g. myservice.app:make_app",
    )
    parser.add_argument(
        "--port",
        type=_port,
        help="TCP port to listen on (else $PORT, else 8000)",
    )
    parser.add_argument(
        "--procs",
        type=_count,
        metavar="N",
        help="worker processes; 0 for one per CPU (the default)",
    )
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        help="read environment variables from a dotenv file before importing "
        "MODULE; variables already set win",
    )
    parser.add_argument(
        "--env-override",
        action="store_true",
        help="let the --env-file variables replace those already set",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="Tornado's debug mode, one process, readable logs (else $DEBUG, else off)",
    )
    parser.add_argument(
        "--shutdown-delay",
        type=_seconds,
        metavar="SECONDS",
        help="keep serving this long after SIGTERM while the health check "
        "fails (else $SHUTDOWN_DELAY, else 0)",
    )
    parser.add_argument(
        "--shutdown-limit",
        type=_seconds,
        metavar="SECONDS",
        help="how long in-flight requests, and each shutdown step, may take "
        "once stopping (else $SHUTDOWN_LIMIT, else 5)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text lines or JSON lines (default: text with --debug, else json)",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {sprockets_http.__version__}",
    )
    return parser


def _port(value: str) -> int:
    port = _number(int, value, "a port")
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0 to 65535)")
    return port


def _count(value: str) -> int:
    count = _number(int, value, "a number of processes")
    if count < 0:
        raise argparse.ArgumentTypeError(f"{count} is not a number of processes")
    return count


def _seconds(value: str) -> float:
    seconds = _number(float, value, "a number of seconds")
    if not seconds >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"{value} is not a number of seconds")
    return seconds


def _number(kind: Callable[[str], _Number], value: str, what: str) -> _Number:
    try:
        return kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not {what}") from None


def _load_env_file(parser: _Parser, path: str, override: bool) -> None:
    """Put the variables of the dotenv file ``path`` in :data:`os.environ`."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as error:
        parser.error(f"cannot read env file {path!r}: {error.strerror}")
    except UnicodeDecodeError:
        parser.error(f"cannot read env file {path!r}: it is not UTF-8 text")
    dotenv.load_dotenv(stream=io.StringIO(text), override=override)


def _load_factory(parser: _Parser, spec: str) -> Callable[..., Any]:
    """Import the factory ``spec`` names; usage errors for what is not there."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        parser.error(f"{spec!r} is not MODULE:CALLABLE")
    if module_name.startswith("."):
        parser.error(f"{module_name!r} is a relative module name")
    # As `python -m` does, so that the console script finds modules in the
    # current directory as well.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: object = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        # Missing is MODULE itself or a package above it; anything else was
        # imported by the module and is the application's own bug.
        missing = error.name or ""
        if missing and f"{module_name}.".startswith(f"{missing}."):
            parser.error(f"no module named {missing!r}")
        raise
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            parser.error(f"module {module_name!r} has no attribute {attribute!r}")
    if not callable(target):
        parser.error(f"{spec!r} is not callable: it is {type(target).__name__!r}")
    return target


if __name__ == "__main__":
    main()
