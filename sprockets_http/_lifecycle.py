"""The one mechanism that runs a lifecycle phase.

Application callbacks, extension hooks and the runner's own steps are all
turned into :class:`Step` objects and run here, so they share one set of
rules: a step may be a plain function, may return an awaitable, or may be a
coroutine function; a failing step is logged with its traceback; and a
failure either stops the phase (``before_run``) or is recorded and the next
step runs anyway (``shutdown``).

Three ways to run a phase, for the three places a phase runs:

:func:`run_steps_before_loop`
    ``before_run``: each step is called while the loop is *not* running,
    as ``sprockets.http`` called its callbacks, so a step may use
    ``IOLoop.current().run_sync()``; an awaitable it returns is run to
    completion on the loop before the next step is called.
:func:`start_steps`
    ``on_start``: each step starts as a task of its own, in order, and
    none waits for another, so a step that runs for ever (a queue
    consumer) does not hold up the next.
:func:`run_steps`
    ``shutdown`` and the runner's drain, inside the running loop, one after
    the other.

:func:`finish_pending_tasks` then gives work still pending on the loop (a
write a library scheduled and did not wait for) a bounded time to finish,
and cancels what is left; :func:`wait_for_other_tasks` waits the same way
on a loop that belongs to someone else, and cancels nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sprockets_http import logconfig

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


def run_steps_before_loop(
    loop: asyncio.AbstractEventLoop,
    phase: str,
    steps: list[Step],
    *,
    stop_on_failure: bool,
) -> BaseException | None:
    """Run ``steps`` in order on ``loop``, which must not be running.

    Each step is called outside the loop; an awaitable it returns is run to
    completion with :meth:`~asyncio.loop.run_until_complete` before the next
    step is called.

    :returns: the first exception a step raised, or :data:`None`
    """
    first_failure: BaseException | None = None
    for step in steps:
        result, failure = _call(phase, step)
        if failure is None and inspect.isawaitable(result):
            failure = loop.run_until_complete(_settle(phase, step, result, None))
        _end(step, failure)
        first_failure = first_failure or failure
        if failure is not None and stop_on_failure:
            break
    return first_failure


def start_steps(
    phase: str, steps: list[Step]
) -> list[asyncio.Task[BaseException | None]]:
    """Start each of ``steps`` as a task of its own, in order.

    Must be called in the running loop.  Each task logs its own failure;
    none is awaited here.
    """
    loop = asyncio.get_running_loop()
    return [
        loop.create_task(_run_one(phase, step, None), name=step.label) for step in steps
    ]


async def run_steps(
    phase: str,
    steps: list[Step],
    *,
    stop_on_failure: bool,
    timeout: float | None = None,
) -> BaseException | None:
    """Run ``steps`` in order inside the running loop.

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
        first_failure = first_failure or failure
        if failure is not None and stop_on_failure:
            break
    return first_failure


async def finish_pending_tasks(limit: float) -> None:
    """Wait up to ``limit`` seconds for the loop's other tasks to finish.

    What is still pending then is cancelled, after one WARNING naming each
    task.  The calling task is not waited for.
    """
    current = asyncio.current_task()
    pending = {task for task in asyncio.all_tasks() if task is not current}
    if not pending:
        return
    LOGGER.debug("waiting for %d pending task(s)", len(pending))
    _, left = await asyncio.wait(pending, timeout=limit)
    if not left:
        return
    LOGGER.warning(
        "cancelling %d task(s) still pending after %.1f s: %s",
        len(left),
        limit,
        ", ".join(sorted(_describe_task(task) for task in left)),
    )
    for task in left:
        task.cancel()
    await asyncio.wait(left, timeout=1.0)


async def wait_for_other_tasks(limit: float, interval: float) -> None:
    """Check every ``interval`` seconds, for ``limit`` seconds at most,
    until the loop runs no task but the calling one.

    Nothing is cancelled: for a loop that someone else runs and will use
    again, as ``sprockets.http`` waited before stopping it.
    """
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    deadline = loop.time() + limit
    while loop.time() < deadline and any(
        task is not current for task in asyncio.all_tasks()
    ):
        await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))


async def _run_one(
    phase: str, step: Step, timeout: float | None
) -> BaseException | None:
    result, failure = _call(phase, step)
    if failure is None and inspect.isawaitable(result):
        failure = await _settle(phase, step, result, timeout)
    _end(step, failure)
    return failure


def _call(phase: str, step: Step) -> tuple[Any, BaseException | None]:
    if step.on_begin is not None:
        step.on_begin()
    try:
        result = step.func()
    except Exception as error:
        _report(phase, step, error)
        return None, error
    logconfig.enable_library_loggers()
    return result, None


async def _settle(
    phase: str, step: Step, awaitable: Awaitable[Any], timeout: float | None
) -> BaseException | None:
    try:
        await asyncio.wait_for(_awaited(awaitable), timeout)
    except asyncio.TimeoutError as error:
        _report(phase, step, error, f"did not finish within {timeout:.1f} seconds")
        return error
    except Exception as error:
        _report(phase, step, error)
        return error
    logconfig.enable_library_loggers()
    return None


def _report(
    phase: str, step: Step, error: BaseException, what: str | None = None
) -> None:
    # The step may have configured logging and disabled this very logger.
    logconfig.enable_library_loggers()
    if what is None:
        LOGGER.error("%s step %s failed", phase, step.label, exc_info=error)
    else:
        LOGGER.error("%s step %s %s", phase, step.label, what)


def _end(step: Step, failure: BaseException | None) -> None:
    if step.on_end is not None:
        step.on_end(failure)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    # asyncio.wait_for takes coroutines and futures, not every awaitable
    # (a Tornado future from another loop, an object with __await__).
    return await awaitable


def _describe_task(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or repr(coro)
    if name == _run_one.__qualname__:  # an on_start step: its name says more
        return task.get_name()
    return f"{task.get_name()} ({name})"
