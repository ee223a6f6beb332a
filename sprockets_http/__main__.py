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
import functools
import importlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import dotenv

import sprockets_http
from sprockets_http import config, reload

_T = TypeVar("_T")

USAGE_ERROR = config.USAGE_ERROR
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
    settings: dict[str, Any] = {
        option.name: getattr(args, option.name)
        for option in _OPTIONS
        if getattr(args, option.name) is not None
    }
    if args.check:
        os.environ[reload.CHECK_VARIABLE] = "1"  # what run() reads
    sprockets_http.run(factory, settings)


# The runner options the command line sets, with their flags.
_OPTIONS = (*config.RUN_OPTIONS, config.DEBUG, config.ACCESS_LOG_QUERY)
_FLAGS = {config.NUMBER_OF_PROCS.name: "--procs"}


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
    for option in _OPTIONS:
        _add_option(parser, option)
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
        "--check",
        action="store_true",
        help="import MODULE, build the application and exit: 0 when that "
        "worked, else the status of a failed start; nothing is served",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {sprockets_http.__version__}",
    )
    return parser


def _add_option(parser: _Parser, option: config.Option[Any]) -> None:
    flag = _FLAGS.get(option.name, option.flag)
    where = f"else ${option.variable}"
    if option.convert is config.flag:  # a switch: present means on
        parser.add_argument(
            flag,
            dest=option.name,
            action="store_const",
            const=True,
            help=f"{option.help} ({where}, else off)",
        )
        return
    default = option.default if option.default_text is None else option.default_text
    parser.add_argument(
        flag,
        dest=option.name,
        # Each value converts to a tuple, which "extend" adds to the list.
        action="extend" if option.repeatable else "store",
        type=functools.partial(_convert, option),
        metavar=option.metavar,
        help=f"{option.help} ({where}, else {default})",
    )


def _convert(option: config.Option[_T], text: str) -> _T:
    try:
        return option.convert(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} {error}") from None


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
