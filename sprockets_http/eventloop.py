"""Which asyncio event loop a serving process runs on.

The ``loop`` setting, the ``LOOP`` environment variable or ``--loop``
chooses (see :data:`sprockets_http.config.LOOP`):

``asyncio``
    the standard library's loop;
``uvloop``
    `uvloop <https://github.com/MagicStack/uvloop>`_, a loop built on
    libuv that Tornado runs on unchanged (the optional extra
    ``sprockets_http[uvloop]``);
``auto``
    uvloop when it is installed, else asyncio (the default).

:func:`sprockets_http.run` calls :func:`use` before it serves, and
:func:`sprockets_http.runner.serve_until_stopped` makes each serving
process's loop with :func:`new_event_loop`.  The ``serving on port`` line
names the loop.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import Callable

from sprockets_http import config

__all__ = ["loop_name", "new_event_loop", "resolve", "use"]

_chosen: str | None = None


def resolve(choice: str) -> str:
    """The loop ``choice`` means on this machine: ``asyncio`` or ``uvloop``.

    :param choice: ``auto``, ``asyncio`` or ``uvloop``
    :raises ValueError: for ``uvloop`` when it is not installed, or an
        unknown choice
    """
    choice = config.LOOP.check(choice)
    installed = importlib.util.find_spec("uvloop") is not None
    if choice == "auto":
        return "uvloop" if installed else "asyncio"
    if choice == "uvloop" and not installed:
        raise ValueError(
            "loop uvloop is not installed: pip install 'sprockets_http[uvloop]'"
        )
    return choice


def use(choice: str) -> str:
    """Make :func:`new_event_loop` create the loop ``choice`` names.

    :returns: the loop that will be used, ``asyncio`` or ``uvloop``
    :raises ValueError: as :func:`resolve`
    """
    global _chosen
    _chosen = resolve(choice)
    return _chosen


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the chosen kind.

    Without :func:`use`, the ``LOOP`` environment variable chooses, else
    ``auto``.

    :raises ValueError: as :func:`resolve`
    :raises sprockets_http.config.EnvironmentValueError: for a malformed
        ``LOOP`` environment variable
    """
    name = _chosen if _chosen is not None else resolve(config.LOOP.resolve({}))
    make: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if name == "uvloop":
        make = importlib.import_module("uvloop").new_event_loop
    return make()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` for a uvloop loop, else ``asyncio``."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
