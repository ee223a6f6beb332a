"""Prometheus metrics of the whole service, whichever worker answers the scrape.

Mount :class:`MetricsHandler` on a path of your choosing::

    from sprockets_http import app, metrics

    def make_app(**settings):
        return app.Application(
            [("/", Hello), ("/metrics", metrics.MetricsHandler)], **settings
        )

It answers the Prometheus text format (OpenMetrics when the ``Accept``
header asks for ``application/openmetrics-text``) with the values of every
worker process of the service, live or gone: each process writes its values
to files in one directory (``prometheus_client``'s multi-process mode), and
the scrape adds them up.  It needs the optional extra ``[metrics]``
(``pip install 'sprockets_http[metrics]'``, which installs
``prometheus_client``); the rest of the package works without it.

The metrics, listed in :doc:`/observability`:

* per request, recorded by :class:`sprockets_http.app.Application` when a
  :class:`MetricsHandler` is mounted in it: ``http_requests_total`` by
  ``method``, ``handler``, ``route`` and ``status``;
  ``http_request_duration_seconds``, a histogram, and
  ``http_response_size_bytes``, a summary (count and sum), by ``handler``
  and ``route``; ``http_requests_in_flight``.
  ``handler`` is the handler class's qualified name and ``route`` the
  pattern it is mounted on, never the request's path, so a client cannot
  create new series.  The ``metrics_buckets`` application setting sets the
  duration buckets (seconds).
* per worker process (a ``pid`` label, for live processes):
  ``process_resident_memory_bytes``, ``process_cpu_seconds_total``,
  ``process_open_fds``, sampled every second; and
  ``event_loop_lag_seconds``, a histogram of how late a callback scheduled
  every 0.25 s runs, which grows when a handler blocks the loop;
* from the supervisor: ``sprockets_http_worker_starts_total``,
  ``sprockets_http_worker_exits_total`` and
  ``sprockets_http_worker_replacements_total``, by ``cause``.

Where the files go
------------------

``prometheus_client`` decides whether values go to files when it is first
imported, reading the ``PROMETHEUS_MULTIPROC_DIR`` environment variable.  So
importing this module sets that variable, when it is not set, to a new
private directory, before it imports ``prometheus_client``; import it at the
top of the application's module, before any module that creates metrics.
(When ``prometheus_client`` was imported first, metrics created from then on
still go to the files; those created before do not, and ``run()`` logs a
warning.)
:func:`sprockets_http.run` imports it whenever ``prometheus_client`` is
installed, keeps the directory for the service's lifetime (a SIGHUP restart
included) and removes it when the service stops.  A directory you name
yourself with ``PROMETHEUS_MULTIPROC_DIR`` is used instead: ``run()``
empties it when the service starts and leaves it in place.

When a worker exits, the supervisor adds its counters, histograms and
summaries to one file of retired values and removes its files, so that
workers replaced by SIGHUP, by a crash or by recycling count exactly once
and the scrape does not slow down as they come and go.  A scrape never sees
a half-written file: it reads under a shared lock that this bookkeeping
takes exclusively, and skips the files of a worker still creating them.

Your own metrics
----------------

Create them with ``prometheus_client`` as usual, at module level or in the
factory, once this module is imported: they are written to the same
directory and show in the scrape, added up over the workers.  Gauges need a
``multiprocess_mode`` (``livesum``, ``liveall``, ``max``...) saying how the
values of the processes combine.  A name that clashes with one of the
metrics above fails when the second is created, naming it.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import contextlib
import fcntl
import functools
import gc
import glob
import importlib.util
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tornado import ioloop, routing, web

from sprockets_http import accesslog, reload

LOGGER = logging.getLogger("sprockets_http.metrics")

DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable that names the directory of the values."""

# "PID:created:PATH" or "PID:given:PATH": which service process prepared
# the directory PATH, and whether it made it (and so removes it).
_OWNER_VARIABLE = "SPROCKETS_HTTP_METRICS_OWNER"


def _owner() -> tuple[str, str]:
    """The pid that prepared the directory named now, and how; else empty."""
    pid, how, path = [*os.environ.get(_OWNER_VARIABLE, "").split(":", 2), "", ""][:3]
    if path != os.environ.get(DIRECTORY_VARIABLE):
        return "", ""  # the variable was set anew since: not ours
    return pid, how


LAG_INTERVAL = 0.25
"""Seconds between two measurements of the event loop's lag."""

PROCESS_INTERVAL = 1.0
"""Seconds between two samples of a worker's memory, CPU time and files."""

DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
"""The default buckets of ``http_request_duration_seconds``, in seconds."""

LAG_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""The buckets of ``event_loop_lag_seconds``."""


def _remove_created(path: str, pid: int) -> None:
    # At exit of the process that made the directory, not of its children.
    if os.getpid() == pid:
        shutil.rmtree(path, ignore_errors=True)


def _claim_directory() -> str | None:
    """Point ``prometheus_client`` at this service's directory; its path.

    :data:`None` when ``prometheus_client`` is not installed.
    """
    if importlib.util.find_spec("prometheus_client") is None:
        return None
    pid = os.getpid()
    path = os.environ.get(DIRECTORY_VARIABLE)
    owner, how = _owner()
    # Inherited from another service's own choice (its child process, or a
    # test run): sharing it would add up two services.  A check of new code
    # (see sprockets_http.reload) serves nothing and keeps its values apart.
    inherited = how == "created" and owner != str(pid)
    checking = os.environ.get(reload.CHECK_VARIABLE, "") not in ("", "0")
    if path and not inherited and not checking:
        os.makedirs(path, exist_ok=True)
        return path
    _remove_abandoned()
    path = tempfile.mkdtemp(prefix=_PREFIX)
    with open(os.path.join(path, _OWNER_FILE), "w") as owner_file:
        owner_file.write(str(pid))
    _set(DIRECTORY_VARIABLE, path)
    _set(_OWNER_VARIABLE, f"{pid}:created:{path}")
    atexit.register(_remove_created, path, pid)
    return path


_PREFIX = "sprockets_http-metrics-"
_OWNER_FILE = ".owner"


def _remove_abandoned() -> None:
    """Remove the directories made here by processes that are gone.

    A service killed with SIGKILL (or by the out-of-memory killer) cannot
    remove its own.
    """
    for path in glob.glob(os.path.join(tempfile.gettempdir(), _PREFIX + "*")):
        try:
            with open(os.path.join(path, _OWNER_FILE)) as owner_file:
                os.kill(int(owner_file.read()), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (OSError, ValueError):
            pass  # not ours to judge: another user's, or being made


def _set(name: str, value: str) -> None:
    # In this process, and in the one a SIGHUP re-executes: the directory
    # and its counts outlive a restart.
    os.environ[name] = value
    reload.keep_across_reexec(name, value)


_DIRECTORY = _claim_directory()

if TYPE_CHECKING or _DIRECTORY is not None:
    import prometheus_client
    from prometheus_client import exposition, metrics_core, mmap_dict
    from prometheus_client import values as _values
    from prometheus_client.openmetrics import exposition as openmetrics_exposition
    from prometheus_client.utils import floatToGoString

    from sprockets_http import _metricfiles

    # Imported before this module, without the directory: metrics made
    # from now on still go to the files.
    _IMPORTED_TOO_EARLY = not getattr(_values.ValueClass, "_multiprocess", False)
    if _IMPORTED_TOO_EARLY:
        _values.ValueClass = _values.MultiProcessValue()

_Encoder = Callable[[Any], bytes]

_REQUESTS = "http_requests"
_DURATION = "http_request_duration_seconds"
_SIZE = "http_response_size_bytes"
_IN_FLIGHT = "http_requests_in_flight"
_LAG = "event_loop_lag_seconds"
_WORKER_EVENTS = "sprockets_http_worker"
_HELP = {
    _REQUESTS: "Requests answered, by method, handler, route and status.",
    _DURATION: "Seconds from a request's arrival to its answer.",
    _SIZE: "Bytes of response body sent.",
    _IN_FLIGHT: "Requests being handled.",
}


def available() -> bool:
    """Whether ``prometheus_client`` is installed, so metrics can be served."""
    return _DIRECTORY is not None


class MetricsHandler(web.RequestHandler):
    """Answers ``GET`` with the metrics of every process of the service.

    The format is Prometheus text, or OpenMetrics when the ``Accept`` header
    asks for it; the answer is never cached.  Its access record is written
    at DEBUG.  Mount it once: a second mount fails when the application is
    created, naming both paths.  Mounting it needs ``prometheus_client``.

    .. versionadded:: 3.0.0
    """

    _sprockets_http_metrics_endpoint = True

    def get(self) -> None:
        """Answer with the metrics."""
        if _DIRECTORY is None:
            raise web.HTTPError(503, "prometheus_client is not installed")
        body, content_type = _document(self.request.headers.get("Accept", ""))
        self.access_log_level = logging.DEBUG
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


def _document(accept: str) -> tuple[bytes, str]:
    """The scrape's body, in the format ``accept`` asks for, and its type."""
    assert _DIRECTORY is not None
    # A scrape makes a thousand samples and more that live for the scrape
    # alone: with the collector on, they set off young collections, and
    # every few dozen scrapes a full one over the whole process, which
    # doubled that scrape's time here.  Freed before it is back on, they
    # set off none.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _sampler.sample_process()
        collected = _Collected(_metricfiles.collect(_DIRECTORY))
        encoder, content_type = exposition.choose_encoder(accept)
        body = _fast(encoder, collected)(collected)
        del collected
    finally:
        if collecting:
            gc.enable()
    return body, content_type


_LEGACY_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*").fullmatch
_LEGACY_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").fullmatch


def _fast(encoder: _Encoder, collected: _Collected) -> _Encoder:
    """``encoder``, or one as exact and faster for these metrics.

    The OpenMetrics encoder of ``prometheus_client`` 0.22 and later, asked
    to replace what a name may not hold by underscores, checks every
    character of every sample's name in Python: 28 of the 45 ms of a scrape
    of 4 workers with 50 handlers here.  When every name is a plain one
    already, escaping for UTF-8 writes the same text, with a few string
    replacements.
    """
    keywords = getattr(encoder, "keywords", None)
    if not keywords or keywords.get("escaping") != getattr(
        openmetrics_exposition, "UNDERSCORES", None
    ):
        return encoder
    names = {metric.name for metric in collected.collect()}
    labels: set[str] = set()
    for metric in collected.collect():
        for sample in metric.samples:
            names.add(sample.name)
            labels.update(sample.labels)
    if all(map(_LEGACY_METRIC_NAME, names)) and all(map(_LEGACY_LABEL_NAME, labels)):
        unchecked: Any = encoder
        return functools.partial(unchecked, escaping=openmetrics_exposition.ALLOWUTF8)
    return encoder


class _Collected:
    """Metrics read already, in the shape the exposition functions take."""

    def __init__(self, metrics: list[metrics_core.Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> list[metrics_core.Metric]:
        return self._metrics


# -- per-request metrics ---------------------------------------------------


class _Series:
    """One value of this process, written through to its file at once."""

    __slots__ = ("_file", "_index")

    def __init__(self, file: _metricfiles.ValueFile, key: str) -> None:
        self._file = file
        self._index = file.index(key)

    def add(self, amount: float) -> None:
        # Added where it is, in the file's memory map: no packing, and no
        # copy of the value to keep in step (this process alone writes the
        # file).  This runs several times per request.
        self._file.values[self._index] += amount


class _Answers:
    """Where the answers of one kind (handler class, method, status) count.

    The request counter, the handler's duration histogram (a bucket and the
    sum) and its response size summary (count and sum): each value's index
    in its file's :attr:`~sprockets_http._metricfiles.ValueFile.values`,
    found once, so that counting an answer is five additions in place, in
    one call: this runs for every request.
    """

    __slots__ = (
        "_bounds",
        "_buckets",
        "_count",
        "_duration_sum",
        "_files",
        "_size_count",
        "_size_sum",
    )

    def __init__(
        self,
        files: _ProcessFiles,
        method: str,
        status: str,
        labels: dict[str, str],
        bounds: tuple[float, ...],
    ) -> None:
        self._files = files
        self._count = files.counters.index(
            _key(
                _REQUESTS,
                _REQUESTS + "_total",
                {"method": method, **labels, "status": status},
            ),
        )
        self._bounds = bounds
        self._buckets = [
            files.histograms.index(
                _key(
                    _DURATION,
                    _DURATION + "_bucket",
                    {**labels, "le": floatToGoString(bound)},
                ),
            )
            for bound in bounds
        ]
        self._duration_sum = files.histograms.index(
            _key(_DURATION, _DURATION + "_sum", labels)
        )
        self._size_count = files.summaries.index(_key(_SIZE, _SIZE + "_count", labels))
        self._size_sum = files.summaries.index(_key(_SIZE, _SIZE + "_sum", labels))

    def count(self, duration: float, size: int) -> None:
        """Count one answer that took ``duration`` seconds and sent ``size`` bytes."""
        files = self._files
        files.counters.values[self._count] += 1.0
        durations = files.histograms.values
        # The first bucket whose bound is at least the duration ("le").
        durations[self._buckets[bisect.bisect_left(self._bounds, duration)]] += 1.0
        durations[self._duration_sum] += duration
        sizes = files.summaries.values
        sizes[self._size_count] += 1.0
        sizes[self._size_sum] += size


def _key(metric: str, sample: str, labels: dict[str, str]) -> str:
    help_text = _HELP.get(metric, "")
    key: str = mmap_dict.mmap_key(
        metric, sample, list(labels), list(labels.values()), help_text
    )
    _metricfiles.made_key(key, metric, sample, labels, help_text)
    return key


class _ProcessFiles:
    """The per-request values of this process, in files of their own.

    Not ``prometheus_client``'s metric objects, whose every update takes a
    lock, checks the pid and looks its key up: this path runs for every
    request.  The files have the library's format and names it reads
    (``TYPE_PID-http.db``).
    """

    def __init__(self, directory: str) -> None:
        pid = os.getpid()
        self.pid = pid
        self.counters = _metricfiles.ValueFile(
            os.path.join(directory, f"counter_{pid}-http.db")
        )
        self.histograms = _metricfiles.ValueFile(
            os.path.join(directory, f"histogram_{pid}-http.db")
        )
        self.summaries = _metricfiles.ValueFile(
            os.path.join(directory, f"summary_{pid}-http.db")
        )
        gauges = _metricfiles.ValueFile(
            os.path.join(directory, f"gauge_livesum_{pid}-http.db")
        )
        self.in_flight = _Series(gauges, _key(_IN_FLIGHT, _IN_FLIGHT, {}))


_files: _ProcessFiles | None = None


def _process_files() -> _ProcessFiles:
    global _files
    if _files is None or _files.pid != os.getpid():
        assert _DIRECTORY is not None
        _files = _ProcessFiles(_DIRECTORY)
    return _files


class _Recorder:
    """Records the requests of one application; see :func:`recorder_for`."""

    def __init__(
        self, routes: dict[type[Any], str], duration_buckets: Sequence[float]
    ) -> None:
        self._routes = routes
        self._durations = (*sorted(set(duration_buckets)), math.inf)
        self._files: _ProcessFiles | None = None
        self._answers: dict[tuple[type[Any], str, int], _Answers] = {}

    def serving(self) -> None:
        """The application is served: measure this process on its loop."""
        _sampler.start()

    def started(self) -> None:
        """A request begins: one more in flight."""
        files = (
            _files if _files is not None and _files is self._files else self._renew()
        )
        files.in_flight.add(1.0)

    def finished(
        self, handler: web.RequestHandler, status: int, elapsed: float
    ) -> None:
        """``handler``'s request is answered with ``status`` after ``elapsed``
        seconds: count it."""
        files = (
            _files if _files is not None and _files is self._files else self._renew()
        )
        files.in_flight.add(-1.0)
        request = handler.request
        key = (type(handler), request.method or "", status)
        answers = self._answers.get(key)
        if answers is None:
            answers = self._answers[key] = self._new_answers(files, *key)
        answers.count(elapsed, accesslog.bytes_sent(request))

    def _renew(self) -> _ProcessFiles:
        # The first request, or the first in a process forked since.
        files = _process_files()
        self._files = files
        self._answers = {}
        _sampler.start()
        return files

    def _new_answers(
        self, files: _ProcessFiles, handler_class: type[Any], method: str, status: int
    ) -> _Answers:
        labels = {
            "handler": accesslog.handler_name(handler_class),
            "route": self._routes.get(handler_class, ""),
        }
        # Methods a client makes up would each make a series.
        if method not in handler_class.SUPPORTED_METHODS:
            method = "OTHER"
        return _Answers(files, method, str(status), labels, self._durations)


def recorder_for(application: web.Application) -> _Recorder | None:
    """What records ``application``'s requests, if it mounts a :class:`MetricsHandler`.

    :returns: :data:`None` when it mounts none
    :raises ValueError: when it mounts several, naming their paths, or
        when ``prometheus_client`` is not installed

    :class:`sprockets_http.app.Application` calls this when it is created
    and when handlers are added.
    """
    mounts = list(_mounted(application.wildcard_router.rules))
    mounts += _mounted(application.default_router.rules[1:])  # add_handlers()
    endpoints = [
        path
        for path, target in mounts
        if getattr(target, "_sprockets_http_metrics_endpoint", False)
    ]
    if not endpoints:
        return None
    if len(endpoints) > 1:
        raise ValueError(
            "MetricsHandler is mounted more than once, on "
            + " and ".join(repr(path) for path in endpoints)
            + ": mount it once"
        )
    if _DIRECTORY is None:
        raise ValueError(
            f"MetricsHandler on {endpoints[0]!r} needs prometheus_client: "
            "pip install 'sprockets_http[metrics]'"
        )
    routes: dict[type[Any], list[str]] = {}
    for path, target in mounts:
        routes.setdefault(target, []).append(path)
    buckets = application.settings.get("metrics_buckets") or DURATION_BUCKETS
    return _Recorder(
        {target: "|".join(paths) for target, paths in routes.items()}, buckets
    )


def _mounted(rules: Iterable[routing.Rule]) -> Iterator[tuple[str, type[Any]]]:
    """Each handler class of ``rules`` with its route pattern, nested ones too."""
    for rule in rules:
        target = rule.target
        if isinstance(target, routing.RuleRouter):
            yield from _mounted(target.rules)
        elif isinstance(target, type) and issubclass(target, web.RequestHandler):
            pattern = getattr(rule.matcher, "regex", None)
            path = pattern.pattern if pattern is not None else repr(rule.matcher)
            yield path.removesuffix("$"), target


# -- per-process metrics -----------------------------------------------------


class _Sampler:
    """Measures this process's loop lag and resources on its running loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._ticks = 0
        self._metrics: tuple[Any, ...] | None = None
        self._metrics_pid = 0

    def start(self) -> None:
        """Start measuring on the current loop, unless it already is."""
        io_loop = ioloop.IOLoop.current(instance=False)
        if io_loop is None:
            return
        loop: asyncio.AbstractEventLoop = io_loop.asyncio_loop  # type: ignore[attr-defined]
        if loop is self._loop and self._pid == os.getpid():
            return
        self._loop = loop
        self._pid = os.getpid()
        loop.call_soon(self._tick, loop, loop.time())

    def _tick(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        if loop is not self._loop or loop.is_closed():
            return
        now = loop.time()
        lag, *_ = self._process_metrics()
        lag.observe(max(0.0, now - due))
        self._ticks += 1
        if self._ticks % round(PROCESS_INTERVAL / LAG_INTERVAL) == 1:
            self.sample_process()
        loop.call_at(now + LAG_INTERVAL, self._tick, loop, now + LAG_INTERVAL)

    def sample_process(self) -> None:
        """Write this process's memory, CPU time and open files now."""
        if _DIRECTORY is None:
            return
        _, memory, cpu, fds = self._process_metrics()
        times = os.times()
        cpu.set(times.user + times.system)
        with contextlib.suppress(OSError):  # not Linux
            with open("/proc/self/statm", "rb") as statm:
                memory.set(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
            fds.set(len(os.listdir("/proc/self/fd")))

    def _process_metrics(self) -> tuple[Any, ...]:
        if self._metrics is None or self._metrics_pid != os.getpid():
            self._metrics_pid = os.getpid()
            gauge = prometheus_client.Gauge
            self._metrics = (
                prometheus_client.Histogram(
                    _LAG,
                    "Seconds a callback scheduled on the event loop ran late.",
                    buckets=LAG_BUCKETS,
                    registry=None,
                ),
                gauge(
                    "process_resident_memory_bytes",
                    "Resident memory of the process, in bytes.",
                    multiprocess_mode="liveall",
                    registry=None,
                ),
                gauge(
                    "process_cpu_seconds_total",
                    "User and system CPU time the process has used, in seconds.",
                    multiprocess_mode="liveall",
                    registry=None,
                ),
                gauge(
                    "process_open_fds",
                    "File descriptors the process holds open.",
                    multiprocess_mode="liveall",
                    registry=None,
                ),
            )
        return self._metrics


_sampler = _Sampler()


# -- the supervisor's side ---------------------------------------------------

_worker_counters: dict[str, Any] = {}
_unretired: set[int] = set()


def observe_worker(event: str, pid: int, cause: str) -> None:
    """Count a worker's start or exit; retire the values of one that exited.

    :param event: ``started`` or ``exited``
    :param pid: the worker's pid
    :param cause: why (see :mod:`sprockets_http.supervisor`)

    :func:`sprockets_http.run` has the supervisor call this in the parent
    process.
    """
    if _DIRECTORY is None:
        return
    if not _worker_counters:
        for name, help_text in [
            ("starts", "Worker processes started, by cause."),
            ("exits", "Worker processes that exited, by cause."),
            ("replacements", "Worker processes started to replace another, by cause."),
        ]:
            _worker_counters[name] = prometheus_client.Counter(
                f"{_WORKER_EVENTS}_{name}", help_text, ["cause"], registry=None
            )
    if event == "started":
        _worker_counters["starts"].labels(cause).inc()
        if cause != "start":
            _worker_counters["replacements"].labels(cause).inc()
    elif event == "exited":
        _worker_counters["exits"].labels(cause).inc()
        _retire(pid)


def _retire(pid: int) -> None:
    """Fold the values of dead processes into the retired file."""
    assert _DIRECTORY is not None
    _unretired.add(pid)
    with _metricfiles.locked(_DIRECTORY, fcntl.LOCK_EX, timeout=1.0) as locked:
        if not locked:  # a scrape is stuck: next time
            return
        for dead in sorted(_unretired):
            _metricfiles.retire(_DIRECTORY, dead)
        _unretired.clear()


@contextlib.contextmanager
def service_directory() -> Iterator[str | None]:
    """The metrics directory for the lifetime of the service; its path.

    :func:`sprockets_http.run` holds it while the service runs, in the
    process that forks the workers.  A directory named by the user is
    emptied of other processes' values on entry; one this module made is
    removed on exit.  A process that re-executes itself (same pid, same
    environment) keeps the values.
    """
    if _DIRECTORY is None:
        yield None
        return
    pid = str(os.getpid())
    owner, how = _owner()
    if owner != pid:  # the user's directory, new to this process
        _empty(_DIRECTORY, keep=pid)
        _set(_OWNER_VARIABLE, f"{pid}:given:{_DIRECTORY}")
        how = "given"
    LOGGER.info("metrics of every process are kept in %s", _DIRECTORY)
    if _IMPORTED_TOO_EARLY:
        LOGGER.warning(
            "prometheus_client was imported before sprockets_http.metrics: "
            "metrics it created before are not added up over the workers"
        )
    try:
        yield _DIRECTORY
    finally:
        if how == "created":
            _remove_created(_DIRECTORY, int(pid))


def _empty(directory: str, keep: str) -> None:
    """Remove the values of earlier runs, keeping this process's own."""
    for path in glob.glob(os.path.join(directory, "*.db")):
        name = os.path.basename(path)[:-3]
        if not (name.endswith("_" + keep) or name.endswith(f"_{keep}-http")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _forget_process_state() -> None:
    global _files, _worker_counters
    _files = None
    _worker_counters = {}
    _unretired.clear()


os.register_at_fork(after_in_child=_forget_process_state)


class _Names:
    """Reserves this module's metric names in the default registry."""

    def describe(self) -> list[metrics_core.Metric]:
        families: list[metrics_core.Metric] = [
            metrics_core.CounterMetricFamily(_REQUESTS, ""),
            metrics_core.HistogramMetricFamily(_DURATION, ""),
            metrics_core.SummaryMetricFamily(_SIZE, ""),
            metrics_core.GaugeMetricFamily(_IN_FLIGHT, ""),
            metrics_core.HistogramMetricFamily(_LAG, ""),
        ]
        families += [
            metrics_core.CounterMetricFamily(f"{_WORKER_EVENTS}_{name}", "")
            for name in ("starts", "exits", "replacements")
        ]
        return families

    def collect(self) -> list[metrics_core.Metric]:
        return []  # the scrape reads the files, not this registry


if _DIRECTORY is not None:
    prometheus_client.REGISTRY.register(_Names())
