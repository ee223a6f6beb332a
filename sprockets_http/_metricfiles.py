"""The files of the multi-process metrics directory: written, added up, retired.

Every process writes its values to files of ``prometheus_client``'s format
(``KIND_PID.db``, or ``gauge_MODE_PID.db``), read here with its reader.
:class:`ValueFile` writes the per-request values; :func:`collect` adds the
files up into ``prometheus_client`` metric families, for its exposition
functions; :func:`retire` folds a dead process's counters, histograms and
summaries into one file of retired values.

Not ``prometheus_client.multiprocess.MultiProcessCollector``: it parses the
JSON key of every value of every file at every scrape, which took 38 ms of
a scrape of 4 workers with 50 handlers here.  Keys never change, so they
are parsed once per process, and values of the same key are added up before
any family is built.  The rules are the library's: counters, histograms and
summaries add up over processes, live and retired; a gauge combines as its
``multiprocess_mode`` says.  Both functions hold the directory's lock, so a
scrape never sees a retirement half done.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import math
import mmap
import os
import struct
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client import metrics_core, mmap_dict

_ADDED_UP = ("counter", "histogram", "summary")
_INTEGER = struct.Struct("i")
_TWO_DOUBLES = struct.Struct("dd")
_FIRST_SIZE = 1 << 16
RETIRED = "retired"
"""The pid part of the names of the files of retired values."""

# A key's metric, sample name, labels (as a tuple of pairs) and help.
_Parsed = tuple[str, str, tuple[tuple[str, str], ...], str]
_parsed: dict[str, _Parsed] = {}


def _parse(key: str) -> _Parsed:
    found = _parsed.get(key)
    if found is None:
        metric, sample, labels, help_text = json.loads(key)
        found = _parsed[key] = (metric, sample, tuple(labels.items()), help_text)
    return found


def made_key(
    key: str, metric: str, sample: str, labels: dict[str, str], help_text: str
) -> None:
    """Note what ``key``, just made by this process, holds.

    The workers of a service make the same keys, so a worker's first scrape
    finds most keys of the others' files known, rather than parsing a
    thousand of them (a third of that scrape's time, here).  Keys are
    written with their labels sorted by name.
    """
    if key not in _parsed:
        _parsed[key] = (metric, sample, tuple(sorted(labels.items())), help_text)


@contextlib.contextmanager
def locked(
    directory: str, operation: int, timeout: float | None = None
) -> Iterator[bool]:
    """Hold the directory's lock; yields whether it was taken.

    :param operation: :data:`fcntl.LOCK_SH` to read, :data:`fcntl.LOCK_EX`
        to change files
    :param timeout: give up after this many seconds; :data:`None` waits
    """
    fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                flags = operation | (0 if deadline is None else fcntl.LOCK_NB)
                fcntl.flock(fd, flags)
                break
            except BlockingIOError:
                if deadline is None or time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.005)
        yield True
    finally:
        os.close(fd)  # releases the lock


class ValueFile:
    """One process's file of values, in the format ``prometheus_client`` reads.

    :param path: the file; an existing one (a pid used again) is continued

    That format, described in ``prometheus_client.mmap_dict.MmapedDict``: a
    32-bit count of the bytes used, 4 bytes of padding, then per value a
    32-bit key length, the UTF-8 key padded with spaces to a multiple of 8
    bytes (counting the length), and two doubles, the value and a
    timestamp.  Unlike the library's class, which looks every key up at
    every write, this one hands out each value's place once, so a write is
    one assignment to a double of the memory map: it runs several times per
    request.
    Values are written in place, so a reader sees each whole or not at all;
    a new key is written before the count that makes it visible.
    """

    def __init__(self, path: str) -> None:
        self._file = open(path, "a+b")  # noqa: SIM115 (held until close())
        size = os.fstat(self._file.fileno()).st_size
        if size == 0:
            size = _FIRST_SIZE
            self._file.truncate(size)
        self.map = mmap.mmap(self._file.fileno(), size)
        """The file's memory map.  Replaced when the file grows."""
        self.values = memoryview(self.map).cast("d")
        """The file as doubles: the value at a place is ``values[place // 8]``
        (places are multiples of 8), read and written in place, each whole.
        Replaced when the file grows: look it up at each write."""
        self._used = _INTEGER.unpack_from(self.map, 0)[0]
        self._places: dict[str, int] = {}
        if self._used == 0:
            self._used = 8
            self.map[0:4] = _INTEGER.pack(self._used)
        else:
            entries = mmap_dict.MmapedDict.read_all_values_from_file(path)
            self._places = {key: place for key, _, _, place in entries}

    def place(self, key: str) -> tuple[int, float]:
        """Where ``key``'s value is, and the value; a new key is added at 0."""
        place = self._places.get(key)
        if place is None:
            encoded = key.encode()
            padded = encoded + b" " * (8 - (len(encoded) + 4) % 8)
            entry = _INTEGER.pack(len(encoded)) + padded + _TWO_DOUBLES.pack(0.0, 0.0)
            end = self._used + len(entry)
            if end > len(self.map):
                size = len(self.map)
                while end > size:
                    size *= 2
                self._file.truncate(size)
                self.values.release()
                self.map.close()
                self.map = mmap.mmap(self._file.fileno(), size)
                self.values = memoryview(self.map).cast("d")
            self.map[self._used : end] = entry
            self._used = end
            self.map[0:4] = _INTEGER.pack(end)
            place = self._places[key] = end - 16
        return place, _TWO_DOUBLES.unpack_from(self.map, place)[0]

    def index(self, key: str) -> int:
        """The index of ``key``'s value in :attr:`values`; see :meth:`place`."""
        return self.place(key)[0] // 8

    def write(self, place: int, value: float) -> None:
        """Write the value at ``place``, from :meth:`place`."""
        self.values[place // 8] = value

    def close(self) -> None:
        """Stop writing; the file stays."""
        self.values.release()
        self.map.close()
        self._file.close()


def _values(path: str) -> list[tuple[str, float, float]]:
    """The keys, values and timestamps of one file; none for a new one."""
    try:
        entries = mmap_dict.MmapedDict.read_all_values_from_file(path)
        return [(key, value, timestamp) for key, value, timestamp, _ in entries]
    except (FileNotFoundError, struct.error):
        # Gone, or so new that its header is not written yet: it holds no
        # value.
        return []


def collect(directory: str) -> list[metrics_core.Metric]:
    """Every value of every process in ``directory``, added up."""
    sums: dict[str, dict[str, float]] = {kind: defaultdict(float) for kind in _ADDED_UP}
    gauges: list[tuple[str, str, list[tuple[str, float, float]]]] = []
    with locked(directory, fcntl.LOCK_SH):
        for path in glob.glob(os.path.join(directory, "*.db")):
            kind, _, rest = os.path.basename(path)[:-3].partition("_")
            if kind == "gauge":
                mode, _, pid = rest.partition("_")
                gauges.append((mode, pid, _values(path)))
            elif kind in sums:
                totals = sums[kind]
                for key, value, _ in _values(path):
                    totals[key] += value
    families: dict[str, metrics_core.Metric] = {}
    for kind, totals in sums.items():
        if kind == "histogram":
            _add_histograms(families, totals)
            continue
        for key, value in totals.items():
            metric, sample, labels, help_text = _parse(key)
            _family(families, metric, help_text, kind).add_sample(
                sample, dict(labels), value
            )
    _add_gauges(families, gauges)
    return list(families.values())


def _family(
    families: dict[str, metrics_core.Metric], name: str, help_text: str, kind: str
) -> metrics_core.Metric:
    family = families.get(name)
    if family is None:
        family = families[name] = metrics_core.Metric(name, help_text, kind)
    return family


# A histogram key's series (metric and labels but "le") and its bound, as a
# number and as written; None for its sum.
_Bucket = tuple[tuple[str, Any], float, str] | None
_buckets: dict[str, _Bucket] = {}


def _bucket(key: str) -> _Bucket:
    if key not in _buckets:
        metric, sample, labels, _ = _parse(key)
        if sample.endswith("_bucket"):
            le = dict(labels)["le"]
            rest = tuple(pair for pair in labels if pair[0] != "le")
            _buckets[key] = ((metric, rest), float(le), le)
        else:
            _buckets[key] = None
    return _buckets[key]


def _add_histograms(
    families: dict[str, metrics_core.Metric], totals: dict[str, float]
) -> None:
    # Per series: its buckets by bound, and its sum.
    buckets: dict[tuple[str, Any], dict[float, tuple[str, float]]] = defaultdict(dict)
    sums: dict[tuple[str, Any], float] = {}
    helps: dict[str, str] = {}
    for key, value in totals.items():
        bucket = _bucket(key)
        if bucket is not None:
            series, bound, le = bucket
            buckets[series][bound] = (le, value)
        else:
            metric, _, labels, help_text = _parse(key)
            helps[metric] = help_text
            sums[metric, labels] = value
    for (metric, labels), by_bound in buckets.items():
        family = _family(families, metric, helps.get(metric, ""), "histogram")
        cumulative = 0.0
        for bound in sorted(by_bound):
            text, value = by_bound[bound]
            cumulative += value
            family.add_sample(
                metric + "_bucket", {**dict(labels), "le": text}, cumulative
            )
        family.add_sample(metric + "_count", dict(labels), cumulative)
        family.add_sample(
            metric + "_sum", dict(labels), sums.get((metric, labels), 0.0)
        )


def _add_gauges(
    families: dict[str, metrics_core.Metric],
    gauges: list[tuple[str, str, list[tuple[str, float, float]]]],
) -> None:
    combined: dict[tuple[str, str, Any], tuple[float, float]] = {}
    for mode, pid, values in gauges:
        per_process = mode in ("all", "liveall")
        for key, value, timestamp in values:
            metric, sample, labels, help_text = _parse(key)
            _family(families, metric, help_text, "gauge")
            if per_process:
                labels = (*labels, ("pid", pid))
            series = (metric, sample, labels)
            if series not in combined or per_process:
                combined[series] = (value, timestamp)
                continue
            old, old_timestamp = combined[series]
            if mode.endswith("sum"):
                combined[series] = (old + value, timestamp)
            elif mode.endswith("max"):
                combined[series] = (max(old, value), timestamp)
            elif mode.endswith("min"):
                combined[series] = (min(old, value), timestamp)
            elif timestamp > old_timestamp:  # mostrecent
                combined[series] = (value, timestamp)
    for (metric, sample, labels), (value, _) in combined.items():
        families[metric].add_sample(sample, dict(labels), value)


def retire(directory: str, pid: int) -> None:
    """Fold the values of the dead process ``pid`` into the retired files.

    Its counters, histograms and summaries are added to those of
    ``KIND_retired.db`` and its files removed; its ``live*`` gauges are
    removed; other gauges keep a dead process's value, as their modes say.
    Call it holding the lock exclusively (see :func:`locked`).
    """
    for suffix in (f"_{pid}.db", f"_{pid}-http.db"):
        for path in glob.glob(os.path.join(directory, "*" + suffix)):
            kind, mode = os.path.basename(path).split("_")[:2]
            if kind in _ADDED_UP:
                retired = mmap_dict.MmapedDict(
                    os.path.join(directory, f"{kind}_{RETIRED}.db")
                )
                try:
                    for key, value, _ in _values(path):
                        if math.isfinite(value):
                            total = retired.read_value(key)[0] + value
                            retired.write_value(key, total, 0.0)
                finally:
                    retired.close()
            elif not (kind == "gauge" and mode.startswith("live")):
                continue
            os.remove(path)
