"""Run code that imports ``sprockets.http`` on :mod:`sprockets_http`.

A service migrates by replacing ``sprockets.http`` with ``sprockets_http`` in
its imports.  Code that cannot change its imports (a library built on
``sprockets.http``, its test suite, or a large service migrating a module at
a time) opts in instead, in one of three ways:

* call :func:`install` before anything imports ``sprockets.http``::

      import sprockets_http.compat

      sprockets_http.compat.install()

      import sprockets.http.app  # this is sprockets_http.app

* run a test suite with this module as a pytest plugin, without touching
  the tests: ``pytest -p sprockets_http.compat``;

* run a module with the names mapped:
  ``python -m sprockets_http.compat MODULE [ARGUMENT ...]`` runs ``MODULE``
  as ``python -m MODULE [ARGUMENT ...]`` would, e.g.
  ``python -m sprockets_http.compat unittest discover tests``.

Once installed, ``sprockets.http`` *is* :mod:`sprockets_http`, and every
``sprockets.http.NAME`` is ``sprockets_http.NAME`` (``app``, ``mixins``,
``runner`` and ``testing`` among them): the same module objects, so a
``mock.patch("sprockets.http.app.Application.stop")`` patches this project's
class.  ``sprockets.http`` does not need to be installed.  When it is, the
published package still imports as usual in every process that does not
opt in; one that opts in gets this project instead.  Other packages in the
``sprockets`` namespace, such as ``sprockets.mixins.mediatype``, import as
usual either way.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import runpy
import sys
from collections.abc import Sequence
from types import ModuleType

ALIAS = "sprockets.http"
"""The package name that is mapped."""

TARGET = "sprockets_http"
"""The package it is mapped to."""

_NAMESPACE = ALIAS.partition(".")[0]

__all__ = ["ALIAS", "TARGET", "install", "is_installed", "main"]


class _AliasLoader(importlib.abc.Loader):
    """Makes the module being imported the already-imported target module."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a placeholder module, replaced by exec_module

    def exec_module(self, module: ModuleType) -> None:
        # The import system returns what sys.modules holds under the name
        # once exec_module is done, so the placeholder is dropped and the
        # target module (with its own __spec__ untouched) takes its place.
        sys.modules[module.__name__] = importlib.import_module(self.target)


class _Finder(importlib.abc.MetaPathFinder):
    """A finder that decides on the module's full name alone."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        return self.spec_for(fullname)

    def spec_for(self, fullname: str) -> importlib.machinery.ModuleSpec | None:
        raise NotImplementedError


class _AliasFinder(_Finder):
    """Finds ``sprockets.http`` and ``sprockets.http.*`` as this project's."""

    def spec_for(self, fullname: str) -> importlib.machinery.ModuleSpec | None:
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        target_name = TARGET + fullname[len(ALIAS) :]
        target_spec = importlib.util.find_spec(target_name)
        if target_spec is None:
            return None  # ModuleNotFoundError, as for any missing module
        return importlib.machinery.ModuleSpec(
            fullname,
            _AliasLoader(target_name),
            is_package=target_spec.submodule_search_locations is not None,
        )


class _NamespaceFallback(_Finder):
    """Provides an empty ``sprockets`` namespace when no installed package does.

    It comes last in :data:`sys.meta_path`, so an installed ``sprockets``
    namespace (``sprockets.mixins.mediatype``'s, or the published
    ``sprockets.http``'s) is always found first.
    """

    def spec_for(self, fullname: str) -> importlib.machinery.ModuleSpec | None:
        if fullname != _NAMESPACE:
            return None
        # No loader and a (here empty) search path: a namespace package.
        return importlib.machinery.ModuleSpec(fullname, None, is_package=True)


def is_installed() -> bool:
    """Whether :func:`install` has been called in this process."""
    return any(isinstance(finder, _AliasFinder) for finder in sys.meta_path)


def install() -> None:
    """Make ``sprockets.http`` and its modules import as :mod:`sprockets_http`.

    Call it before anything imports ``sprockets.http``; calling it again
    does nothing.  It lasts for the life of the process.

    :raises RuntimeError: when the published ``sprockets.http`` (or any
        module of that name other than this project) is already imported:
        two copies of the library in one process would each have their own
        classes
    """
    loaded = sys.modules.get(ALIAS)
    if loaded is not None and loaded is not sys.modules.get(TARGET):
        raise RuntimeError(
            f"{ALIAS} was imported from {getattr(loaded, '__file__', loaded)!r} "
            f"before sprockets_http.compat.install(); call install() first"
        )
    if is_installed():
        return
    sys.meta_path.insert(0, _AliasFinder())
    sys.meta_path.append(_NamespaceFallback())


def pytest_load_initial_conftests(
    early_config: object, parser: object, args: object
) -> None:
    """pytest hook: install the mapping before any test module is imported.

    Used by ``pytest -p sprockets_http.compat``; pytest calls it before it
    imports ``conftest.py`` files and test modules.
    """
    install()


def main(argv: Sequence[str] | None = None) -> None:
    """Run a module as ``python -m`` would, with the mapping installed.

    :param argv: ``[MODULE, ARGUMENT, ...]``; :data:`sys.argv` without the
        program name when omitted
    :raises SystemExit: 2 with a usage line when no module is named
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0].startswith("-"):
        sys.stderr.write(
            "usage: python -m sprockets_http.compat MODULE [ARGUMENT ...]\n"
            "Runs MODULE as 'python -m MODULE' with sprockets.http mapped to "
            "sprockets_http.\n"
        )
        raise SystemExit(2)
    install()
    module = arguments[0]
    sys.argv = arguments  # run_module replaces sys.argv[0] with the path
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    # Run this module's canonical copy, not the one executing as __main__,
    # so that a later "import sprockets_http.compat" sees the same state.
    from sprockets_http import compat

    compat.main()
