"""Development reload: the new code on every save, even after a broken one.

In debug mode Tornado's ``autoreload`` setting is on by default, and
Tornado's own reloader re-executes the process the moment a source file
changes: requests in flight and the ``shutdown`` callbacks are cut short,
and a file saved with a syntax error ends the process, so the developer has
to start it again by hand.  :func:`sprockets_http.run` in debug mode uses
this module instead, whenever the application's ``autoreload`` setting is
on:

* every :data:`CHECK_INTERVAL` seconds it looks at the source files of
  every imported module (and those given to
  :func:`tornado.autoreload.watch`);
* when one has changed, the service stops as a replaced worker does: it
  stops accepting, lets its requests finish and runs its ``shutdown``
  callbacks; then the process re-executes itself into :func:`main`, which runs the
  service's command line again in the same process;
* when that fails (a syntax or import error, a factory or ``before_run``
  callback that raises), the traceback is logged and the process waits for
  the next change to any imported file, or to a file of the traceback, and
  then tries again.

The process keeps its id throughout.  The port is closed while the new code
starts.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import importlib.util
import json
import logging
import logging.config
import os
import runpy
import signal
import sys
import time
import traceback
import types
from collections.abc import Callable, Iterable

from tornado import autoreload, ioloop

from sprockets_http import logconfig, reload
from sprockets_http.runner import Runner

LOGGER = logging.getLogger("sprockets_http.devreload")

CHECK_INTERVAL = 0.5
"""Seconds between two looks at the source files."""

# How the wrapper finds the command line it runs: {"options": [...],
# "program": ["-m", "module", ...] or ["path", ...]}.
_VARIABLE = "SPROCKETS_HTTP_DEVRELOAD"
_launch: dict[str, list[str]] | None = None  # in the wrapper: what it runs
_WRAPPER = "from sprockets_http import devreload; devreload.main()"


class Reloader:
    """Watches the source files of one serving process.

    :meth:`watching` wraps the factory of its runner; once that runner has
    stopped, :meth:`restart_if_changed` re-executes the process when a file
    changed.

    .. versionadded:: 3.0.0
    """

    def __init__(self) -> None:
        self.changed: str | None = None

    def watching(self, make_runner: Callable[[], Runner]) -> Callable[[], Runner]:
        """``make_runner``, also watching files when ``autoreload`` is on."""

        def make_watched_runner() -> Runner:
            runner = make_runner()
            if runner.application.settings.get("autoreload"):
                # Tornado's reloader started with the application: this
                # one replaces it (the flag is the one Tornado sets when
                # it reloads, after which it watches no more).
                autoreload._reload_attempted = True
                files = _Files()
                watch = ioloop.PeriodicCallback(
                    lambda: self._check(files, runner, watch), CHECK_INTERVAL * 1000
                )
                watch.start()
            return runner

        return make_watched_runner

    def _check(
        self, files: _Files, runner: Runner, watch: ioloop.PeriodicCallback
    ) -> None:
        self.changed = files.changed()
        if self.changed is not None:
            watch.stop()
            LOGGER.info("%s changed, reloading (pid %d)", self.changed, os.getpid())
            runner.request_stop(signal.SIGTERM, replacing=True)

    def restart_if_changed(self) -> None:
        """Re-execute the process with the new code if a file changed.

        Returns only when no file changed (the service was stopped).
        """
        if self.changed is not None:
            _reexec(_launch or _this_launch())


def main() -> None:
    """Run the service's command line; when it fails, log why and wait for
    a change to run it again.

    What a reloading process re-executes into; the command line to run is
    in an environment variable.
    """
    global _launch
    _launch = json.loads(os.environ.pop(_VARIABLE))
    program = _launch["program"]
    involved = _program_file(program)
    try:
        if program[0] == "-m":
            sys.argv = program[1:]
            runpy.run_module(program[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(program)
            runpy.run_path(program[0], run_name="__main__")
        return
    except SystemExit as stop:
        if not stop.code:
            raise
        _configure_logging()
        LOGGER.error("the service exited with status %s", stop.code)
    except KeyboardInterrupt:
        return
    except Exception as error:
        _configure_logging()
        LOGGER.error("the service failed to start", exc_info=True)
        involved |= _files_of(error)
    _wait_for_change(involved)
    _reexec(_launch)


class _Files:
    """The modification times of the files to watch, as first seen."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self._extra = set(extra)
        self._seen = {path: _modified(path) for path in self._paths()}

    def _paths(self) -> set[str]:
        paths = set(self._extra)
        paths.update(getattr(autoreload, "_watched_files", ()))
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if isinstance(module, types.ModuleType) and path:
                paths.add(path[:-1] if path.endswith((".pyc", ".pyo")) else path)
        return paths

    def changed(self) -> str | None:
        """A file changed (or gone) since first seen, or :data:`None`."""
        for path in self._paths():
            modified = _modified(path)
            if path not in self._seen:  # imported since
                self._seen[path] = modified
            elif modified != self._seen[path]:
                return path
        return None


def _modified(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _program_file(program: list[str]) -> set[str]:
    """The file of the program's main module, which runpy does not keep in
    :data:`sys.modules`."""
    if program[0] != "-m":
        return {os.path.abspath(program[0])}
    try:
        spec = importlib.util.find_spec(program[1])
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(f"{program[1]}.__main__")
    except (ImportError, ValueError):  # a package above it is broken
        return set()
    return {spec.origin} if spec is not None and spec.origin else set()


def _files_of(error: BaseException) -> set[str]:
    files = {frame.filename for frame in traceback.extract_tb(error.__traceback__)}
    if isinstance(error, SyntaxError) and error.filename:
        files.add(error.filename)
    return files


def _wait_for_change(involved: set[str]) -> None:
    files = _Files(involved)
    LOGGER.info("waiting for a change to start the service again")
    # Stopping while waiting is not a failure.
    signal.signal(signal.SIGTERM, lambda signo, frame: sys.exit(0))
    try:
        while (changed := files.changed()) is None:
            time.sleep(CHECK_INTERVAL)
    except KeyboardInterrupt:
        raise SystemExit(0) from None
    LOGGER.info("%s changed, starting the service again", changed)


def _configure_logging() -> None:
    # An import error comes before the service configured logging.
    if not logging.getLogger().handlers:
        logging.config.dictConfig(logconfig.default_config(debug=True))


def _this_launch() -> dict[str, list[str]]:
    """How this process was started: interpreter options and program."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    program = list(sys.argv) if spec is None else ["-m", spec.name, *sys.argv[1:]]
    options = sys.orig_argv[1 : len(sys.orig_argv) - len(program)]
    return {"options": options, "program": program}


def _reexec(launch: dict[str, list[str]]) -> None:
    os.environ[_VARIABLE] = json.dumps(launch)
    reload.flush_output()
    # Not "-m sprockets_http.devreload": the package imports this module
    # already, which runpy warns about.
    command = [sys.executable, *launch["options"], "-c", _WRAPPER]
    os.execv(sys.executable, command)
