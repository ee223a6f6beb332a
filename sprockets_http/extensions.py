"""Lifecycle extensions: named, ordered and observable plugins.

An extension is any object with a non-empty ``name`` and any of the hook
methods ``before_run(app, io_loop)``, ``on_start(app, io_loop)`` and
``shutdown(app)``.  It may also declare:

``version``
    Reported in the registry; :data:`None` when absent.
``needs``
    Feature names that must be started before this extension.
``provides``
    Feature names this extension makes available.  An extension always
    provides its own name as well.
``first`` / ``last``
    Prefer to start before (after) every other extension.

:class:`Extension` is a base class with those defaults; inheriting from it is
optional.  The hooks run as :class:`~sprockets_http._lifecycle.Step` objects
inside the application's lifecycle phases, beside the plain callbacks and
under the same rules: each may be a plain function, return an awaitable, or
be a coroutine function; a failing ``before_run`` stops the start-up; a
failing ``on_start`` or ``shutdown`` is logged and the others still run.

:class:`ExtensionRegistry` keeps the extensions of one application, orders
them, turns their hooks into steps and tracks each one's
:class:`ExtensionStatus`.  :func:`load_installed` finds extensions that
installed packages publish in the :data:`ENTRY_POINT_GROUP` entry-point
group.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import dataclasses
import functools
import graphlib
import heapq
import importlib.metadata
import inspect
import itertools
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from sprockets_http import _lifecycle

ENTRY_POINT_GROUP = "sprockets_http.extensions"
"""The entry-point group in which packages publish extensions."""

HOOKS = ("before_run", "on_start", "shutdown")
"""The hook methods an extension may have, one per lifecycle phase."""

ExtensionState = Literal[
    "registered", "starting", "running", "failed", "stopping", "stopped"
]
"""Where an extension is in its life.

``registered``
    added, not started (an extension stays here when the start-up failed
    before its turn came);
``starting``
    its ``before_run`` hook began, and its ``on_start`` hook has not
    finished yet;
``running``
    its ``on_start`` hook finished (or it has none);
``failed``
    one of its hooks raised; it keeps this state to the end;
``stopping``
    its ``shutdown`` hook is running;
``stopped``
    its ``shutdown`` hook finished.

.. versionadded:: 3.0.0
"""


class ExtensionError(ValueError):
    """An extension was refused, or the extensions cannot be ordered or found.

    .. versionadded:: 3.0.0
    """


class Extension:
    """A base class giving every optional extension attribute its default.

    Subclasses set :attr:`name` and define the hooks they need; objects that
    do not inherit from this class work just as well.

    .. versionadded:: 3.0.0
    """

    name: str = ""
    """The extension's unique, non-empty name."""

    version: str | None = None
    """The extension's version, shown in the registry."""

    needs: Iterable[str] = ()
    """Features that must be started before this extension."""

    provides: Iterable[str] = ()
    """Features this extension makes available to others."""

    first: bool = False
    """Prefer to start before every other extension."""

    last: bool = False
    """Prefer to start after every other extension."""


@dataclasses.dataclass
class ExtensionStatus:
    """What the registry knows about one extension.

    .. versionadded:: 3.0.0
    """

    version: str | None
    """The extension's version, or :data:`None` when it has none."""

    state: ExtensionState = "registered"
    """See :data:`ExtensionState`."""

    def as_dict(self) -> dict[str, str | None]:
        """The status as a JSON-ready dictionary."""
        return {"version": self.version, "state": self.state}


@dataclasses.dataclass(frozen=True)
class _Entry:
    """An extension and what it declared when it was added."""

    extension: object
    name: str
    needs: tuple[str, ...]
    provides: tuple[str, ...]
    rank: int  # 0 for first, 1 for the others, 2 for last


class ExtensionRegistry:
    """The extensions of one application, in registration order.

    :class:`~sprockets_http.app.CallbackManager` owns one; use its
    :meth:`~sprockets_http.app.CallbackManager.add_extension` and
    :attr:`~sprockets_http.app.CallbackManager.extensions` rather than this
    class directly.

    .. versionadded:: 3.0.0
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._statuses: dict[str, ExtensionStatus] = {}
        self._order: list[_Entry] = []  # settled when the application starts
        self._start_begun = False

    @property
    def statuses(self) -> Mapping[str, ExtensionStatus]:
        """A read-only view: extension name to :class:`ExtensionStatus`."""
        return types.MappingProxyType(self._statuses)

    def add(self, extension: object, default_version: str | None = None) -> None:
        """Register ``extension``.

        :param extension: any object with a non-empty ``name``
        :param default_version: the version to report when ``extension``
            has none (the version of the package that published it)
        :raises ExtensionError: when the name is missing, empty or already
            registered, when ``needs`` or ``provides`` is not an iterable of
            names, when both ``first`` and ``last`` are set, when a hook is
            not callable, or when the application has already started
        """
        name = getattr(extension, "name", None)
        if not isinstance(name, str) or not name.strip():
            raise ExtensionError(
                f"extension {extension!r} has no name: "
                "give it a non-empty string attribute 'name'"
            )
        if name in self._entries:
            raise ExtensionError(
                f"an extension named {name!r} is already registered "
                f"({self._entries[name].extension!r}); names must be unique"
            )
        if self._start_begun:
            raise ExtensionError(
                f"cannot add extension {name!r}: the application has started"
            )
        first = bool(getattr(extension, "first", False))
        last = bool(getattr(extension, "last", False))
        if first and last:
            raise ExtensionError(f"extension {name!r} cannot be both first and last")
        for hook in HOOKS:
            method = getattr(extension, hook, None)
            if method is not None and not callable(method):
                raise ExtensionError(f"extension {name!r}: {hook} is not callable")
        version = getattr(extension, "version", None)
        self._entries[name] = _Entry(
            extension,
            name,
            _feature_names(name, "needs", getattr(extension, "needs", ())),
            (
                name,
                *_feature_names(name, "provides", getattr(extension, "provides", ())),
            ),
            0 if first else 2 if last else 1,
        )
        self._statuses[name] = ExtensionStatus(
            default_version if version is None else str(version)
        )

    def start_order(self) -> list[object]:
        """The extensions in the order they start; shutdown is the reverse.

        ``first`` ones come first, then the others, then ``last`` ones, each
        time in registration order, except that an extension always starts
        after every extension providing a feature it needs.

        :raises ExtensionError: when a needed feature is provided by no
            extension, or when extensions need each other in a cycle; the
            message names the extensions and features involved
        """
        return [entry.extension for entry in self._ordered()]

    def steps(self, phase: str, args: tuple[Any, ...]) -> list[_lifecycle.Step]:
        """The extension hooks of ``phase`` as steps, in the order they run.

        :param phase: ``before_run``, ``on_start`` or ``shutdown``
        :param args: the arguments of the hooks of that phase

        ``before_run`` takes every extension in :meth:`start_order`; when
        they cannot be ordered, its only step raises the
        :class:`ExtensionError`, so the start-up fails through the usual
        path.  ``on_start`` takes those that started and did not fail;
        ``shutdown`` takes those that started, failed ones included, in
        reverse order.  Each step updates the extension's state.
        """
        begin: ExtensionState | None
        done: ExtensionState
        if phase == "before_run":
            self._start_begun = True
            self._order = []
            try:
                self._order = self._ordered()
            except ExtensionError as error:
                return [
                    _lifecycle.Step(
                        "ordering extensions", functools.partial(_raise, error)
                    )
                ]
            for status in self._statuses.values():
                status.state = "registered"
            entries = self._order
            begin, done = "starting", "starting"
        elif phase == "on_start":
            entries = [
                entry
                for entry in self._order
                if self._statuses[entry.name].state == "starting"
            ]
            begin, done = None, "running"
        elif phase == "shutdown":
            entries = [
                entry
                for entry in reversed(self._order)
                if self._statuses[entry.name].state != "registered"
            ]
            begin, done = "stopping", "stopped"
        else:
            raise ValueError(f"unknown lifecycle phase {phase!r}")
        return [
            _lifecycle.Step(
                f"{phase} extension {entry.name!r}",
                _hook_call(entry.extension, phase, args),
                functools.partial(self._begin, entry, begin),
                functools.partial(self._end, entry, done),
            )
            for entry in entries
        ]

    def _ordered(self) -> list[_Entry]:
        providers: dict[str, list[_Entry]] = {}
        for entry in self._entries.values():
            for feature in entry.provides:
                providers.setdefault(feature, []).append(entry)
        unmet = [
            f"{entry.name!r} needs {feature!r}"
            for entry in self._entries.values()
            for feature in entry.needs
            if feature not in providers
        ]
        if unmet:
            raise ExtensionError(
                "no registered extension provides what these need: "
                + "; ".join(unmet)
                + f" (registered: {', '.join(map(repr, self._entries)) or 'none'})"
            )
        needs = {
            entry.name: {
                provider.name
                for feature in entry.needs
                for provider in providers[feature]
                if provider is not entry
            }
            for entry in self._entries.values()
        }
        sorter = graphlib.TopologicalSorter(needs)
        try:
            sorter.prepare()
        except graphlib.CycleError as error:
            raise ExtensionError(self._describe_cycle(error.args[1])) from None
        # Among the extensions free to start, the heap picks the lowest
        # (rank, registration index), so "first", "last" and registration
        # order hold wherever the needs allow.
        index = {name: position for position, name in enumerate(self._entries)}
        ready: list[tuple[int, int, str]] = []
        ordered: list[_Entry] = []
        while sorter.is_active():
            for name in sorter.get_ready():
                heapq.heappush(ready, (self._entries[name].rank, index[name], name))
            _, _, name = heapq.heappop(ready)
            ordered.append(self._entries[name])
            sorter.done(name)
        return ordered

    def _describe_cycle(self, cycle: list[str]) -> str:
        # graphlib lists each extension before one that needs it, the first
        # again at the end; told from the earliest registered, the needs
        # read forwards.
        names = list(reversed(cycle[1:]))
        start = names.index(min(names, key=list(self._entries).index))
        cycle = [*names[start:], *names[:start], names[start]]
        links = []
        for needer, provider in itertools.pairwise(cycle):
            features = sorted(
                set(self._entries[needer].needs) & set(self._entries[provider].provides)
            )
            links.append(
                f"{needer!r} needs {', '.join(map(repr, features))} "
                f"provided by {provider!r}"
            )
        return "extensions need each other in a cycle: " + "; ".join(links)

    def _begin(self, entry: _Entry, state: ExtensionState | None) -> None:
        status = self._statuses[entry.name]
        if state is not None and status.state != "failed":
            status.state = state

    def _end(
        self, entry: _Entry, state: ExtensionState, failure: BaseException | None
    ) -> None:
        status = self._statuses[entry.name]
        if failure is not None:
            status.state = "failed"
        elif status.state != "failed":
            status.state = state


def load_installed(names: Iterable[str]) -> list[tuple[object, str | None]]:
    """Load the extensions that installed packages publish under ``names``.

    :param names: entry-point names in the :data:`ENTRY_POINT_GROUP` group
    :returns: for each name, the extension and the version of the package
        that published it; an entry point naming a class gives an instance
        made without arguments, anything else is used as it is
    :raises ExtensionError: when ``names`` is a string, or when a name is
        not published by any installed package (the message lists those
        that are)
    :raises Exception: whatever importing an entry point or instantiating
        its class raised

    .. versionadded:: 3.0.0
    """
    if isinstance(names, str):
        raise ExtensionError(
            f"the extensions setting must be a list of names, not the string {names!r}"
        )
    published: dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        published.setdefault(entry_point.name, entry_point)
    loaded: list[tuple[object, str | None]] = []
    for name in names:
        if name not in published:
            available = ", ".join(map(repr, sorted(published))) or "none"
            raise ExtensionError(
                f"no installed package publishes an extension named {name!r} "
                f"in the entry-point group {ENTRY_POINT_GROUP!r}; "
                f"available: {available}"
            )
        entry_point = published[name]
        target = entry_point.load()
        extension = target() if inspect.isclass(target) else target
        dist = entry_point.dist
        loaded.append((extension, None if dist is None else dist.version))
    return loaded


def _feature_names(name: str, attribute: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ExtensionError(
            f"extension {name!r}: {attribute} must be an iterable of feature "
            f"names, not {value!r}"
        )
    features = tuple(value)
    for feature in features:
        if not isinstance(feature, str) or not feature:
            raise ExtensionError(
                f"extension {name!r}: {attribute} holds {feature!r}, "
                "which is not a feature name"
            )
    return features


def _hook_call(
    extension: object, phase: str, args: tuple[Any, ...]
) -> Callable[[], Any]:
    hook = getattr(extension, phase, None)
    if hook is None:
        return _nothing
    return functools.partial(hook, *args)


def _nothing() -> None:
    """What an extension without a hook for a phase does in it."""


def _raise(error: BaseException) -> None:
    raise error
