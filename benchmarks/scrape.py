"""What one ``/metrics`` scrape costs, in one process, without HTTP's noise.

``python benchmarks/scrape.py [--scrapes N] [--directory DIR]`` starts the
``sprockets-routes`` service of ``servers.py`` with 4 workers and 50
handlers, requests every handler a few times through new connections (so
every worker has every series, as ``run.py``'s scrape timing does), copies
the service's metrics directory to ``DIR`` (a temporary one by default)
and stops the service.  It then builds the scrape document from that copy
N times, as :class:`~sprockets_http.metrics.MetricsHandler` does (adding up
the files, then the OpenMetrics exposition), and prints the median and
slowest time of one.  Given a ``DIR`` that holds a copy already, it reuses
it, so that:

``--changing`` adds 1 to every value of every file before each scrape, as
if every series had changed since the last (a busy service's scrape);
``--profile`` prints
the functions that take the time (``cProfile``); ``--only-scrape`` just
scrapes, for a count of the instructions one scrape
executes: run it under ``valgrind --tool=callgrind`` with two numbers of
scrapes on the same ``DIR``; the difference of the totals, divided by the
difference of the numbers, is the instructions per scrape, the same from
one run to the next whatever else the machine does.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import mmap
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from prometheus_client import mmap_dict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

WORKERS = 4
HANDLERS = 50
ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def make_copy(directory: str) -> None:
    """Run the service, request every handler, copy its metrics files."""
    sys.path.insert(0, HERE)
    import run

    service_files = tempfile.mkdtemp()
    env = {
        "BENCH_LOG_LEVEL": "WARNING",
        "BENCH_ROUTES": str(HANDLERS),
        "PROMETHEUS_MULTIPROC_DIR": service_files,
    }
    try:
        with run.server("sprockets-routes", WORKERS, cpu=None, env=env) as (port, _):
            for _ in range(WORKERS * 3):  # new connections land on every worker
                for n in range(HANDLERS):
                    connection = http.client.HTTPConnection("127.0.0.1", port)
                    connection.request("GET", f"/h/{n}")
                    connection.getresponse().read()
                    connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port)
            connection.request("GET", "/metrics")  # the scraped worker's gauges
            connection.getresponse().read()
            shutil.copytree(service_files, directory, dirs_exist_ok=True)
    finally:
        shutil.rmtree(service_files, ignore_errors=True)


def changer(directory: str) -> Callable[[], None]:
    """What adds 1 to every value of the files of ``directory``."""
    views = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".db"):
            with open(os.path.join(directory, name), "r+b") as file:
                data = mmap.mmap(file.fileno(), 0)
            entries = mmap_dict.MmapedDict.read_all_values_from_file(file.name)
            places = [place // 8 for _, _, _, place in entries]
            views.append((memoryview(data).cast("d"), places))

    def change() -> None:
        for values, places in views:
            for place in places:
                values[place] += 1.0

    return change


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--directory", help="the copy of the files, made if empty")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--only-scrape", action="store_true")
    parser.add_argument("--changing", action="store_true")
    options = parser.parse_args()
    directory = options.directory or tempfile.mkdtemp()
    os.makedirs(directory, exist_ok=True)
    if not any(name.endswith(".db") for name in os.listdir(directory)):
        make_copy(directory)
    # A copy of the copy is this process's metrics directory, as in a
    # worker: its own values, written at every scrape, are left out of the
    # next run.
    scraped = tempfile.mkdtemp()
    shutil.copytree(directory, scraped, dirs_exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = scraped
    from sprockets_http import metrics

    change = changer(scraped) if options.changing else lambda: None

    def scrape() -> bytes:
        change()
        return metrics._document(ACCEPT)[0]

    body = scrape()
    if options.only_scrape:
        for _ in range(options.scrapes - 1):
            scrape()
        return
    if options.profile:
        profile = cProfile.Profile()
        profile.runcall(lambda: [scrape() for _ in range(options.scrapes)])
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    times = []
    for _ in range(options.scrapes):
        started = time.perf_counter()
        scrape()
        times.append(time.perf_counter() - started)
    lines = body.count(b"\n")
    print(
        f"{lines} lines, {len(body)} bytes; one scrape: median "
        f"{statistics.median(times) * 1000:.2f} ms, max {max(times) * 1000:.2f} ms "
        f"over {len(times)} ({directory})"
    )


if __name__ == "__main__":
    main()
