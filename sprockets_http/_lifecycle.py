"""The one mechanism that runs a lifecycle phase.

Application callbacks, extension hooks and the runner's own steps are all
turned into :class:`Step` objects and run by :func:`run_steps`, so they share
one set of rules: a step may be a plain function, may return an awaitable, or
may be a coroutine function; a failing step is logged with its traceback; and
a failure either stops the phase (``before_run``) or is recorded and the next
step runs anyway (``on_start``, ``shutdown``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

LOGGER = logging.getLogger("sprockets_http.lifecycle")


@dataclasses.dataclass(frozen=True)
class Step:
    """One thing to do in a phase.

    :param label: how the step is named in log lines
    :param func: called with no arguments; may return an awaitable
    :param on_begin: called before ``func`` (used to track state)
    :param on_end: called after ``func`` with the exception it raised,
        or :data:`None` when it succeeded
    """

    label: str
    func: Callable[[], Any]
    on_begin: Callable[[], None] | None = None
    on_end: Callable[[BaseException | None], None] | None = None


def describe(func: object) -> str:
    """Name a callback for log lines: its qualified name, else its repr."""
    target = getattr(func, "func", func)  # functools.partial
    name = getattr(target, "__qualname__", None)
    module = getattr(target, "__module__", None)
    if name and module:
        return f"{module}.{name}"
    return repr(func)


async def run_steps(
    phase: str,
    steps: list[Step],
    *,
    stop_on_failure: bool,
    timeout: float | None = None,
) -> BaseException | None:
    """Run ``steps`` in order and return the first failure, if any.

    :param phase: the phase name, used in log lines
    :param steps: what to run, in order
    :param stop_on_failure: when true the first failure ends the phase;
        otherwise every step runs whatever the others did
    :param timeout: seconds each awaitable step may take before it is
        cancelled and counted as failed; :data:`None` waits for ever
    :returns: the first exception a step raised, or :data:`None`
    """
    first_failure: BaseException | None = None
    for step in steps:
        failure = await _run_one(phase, step, timeout)
        if failure is None:
            continue
        if first_failure is None:
            first_failure = failure
        if stop_on_failure:
            break
    return first_failure


async def _run_one(
    phase: str, step: Step, timeout: float | None
) -> BaseException | None:
    if step.on_begin is not None:
        step.on_begin()
    failure: BaseException | None = None
    try:
        result = step.func()
        if inspect.isawaitable(result):
            await asyncio.wait_for(_awaited(result), timeout)
    except asyncio.TimeoutError as error:
        LOGGER.error(
            "%s step %s did not finish within %.1f seconds", phase, step.label, timeout
        )
        failure = error
    except Exception as error:
        LOGGER.exception("%s step %s failed", phase, step.label)
        failure = error
    if step.on_end is not None:
        step.on_end(failure)
    return failure


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    # asyncio.wait_for takes coroutines and futures, not every awaitable
    # (a Tornado future from another loop, an object with __await__).
    return await awaitable
