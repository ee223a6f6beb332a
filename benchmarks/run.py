"""Measure sprockets_http against bare Tornado, in one run, on this machine.

``python benchmarks/run.py`` (or ``make bench``) needs ``wrk`` (Debian's
package; installed with apt-get when missing and running as root).  It
prints, side by side:

* requests/s of a hello-world JSON handler: the plain Tornado a user would
  otherwise run (``Application.listen()``, ``logging.basicConfig()`` at INFO,
  so Tornado writes its own access line per request) against ``run()`` +
  ``Application`` + ``ErrorLogger`` + ``ErrorWriter`` with its access records
  written as JSON, request ids and metrics on; both on asyncio, then ours on
  uvloop against the same bare Tornado on asyncio;
* the same for a handler raising ``HTTPError(404)``: bare Tornado writes its
  access line at WARNING, we write the access record and ErrorLogger's;
* requests/s of the sprockets hello service with 1 and 2 worker processes;
* the time a ``/metrics`` scrape takes with 4 workers and 50 handlers;
* the time from SIGTERM to exit of an idle service, 1 and 2 processes.

Both servers of a pair write their log records to the same file (emptied
every round).  For each pair the two servers run at once, each pinned to
CPU 0 with wrk on CPU 1; rounds alternate between them and each ratio is
the median of the per-round ratios, so drift of the machine's speed hits
both sides alike; the lowest and highest per-round ratios are shown too.
Besides requests/s it reports the server's CPU time per request (from
/proc), which a noisy neighbour disturbs less.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SERVERS = os.path.join(HERE, "servers.py")
# What Prometheus 2 and 3 send: OpenMetrics first.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,"
    "application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk with apt-get ...", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        found = shutil.which("wrk")
    if not found:
        sys.exit(
            "benchmarks need wrk: install Debian's package with apt-get install wrk"
        )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_group(process: subprocess.Popen[Any]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_until_answering(port: int, path: str = "/", timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", path)
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # a benchmark script, not a test: polling is fine


@contextmanager
def server(
    kind: str,
    processes: int = 1,
    cpu: str | None = "0",
    log: Any = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[int, int]]:
    port = free_port()
    command = [sys.executable, SERVERS, kind, str(port), str(processes)]
    if cpu is not None:
        command = ["taskset", "-c", cpu, *command]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    try:
        wait_until_answering(port, "/metrics" if kind.startswith("sprockets") else "/")
        yield port, process.pid  # taskset execs the server: same pid
    finally:
        kill_group(process)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as stream:
        fields = stream.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(
    wrk: str, port: int, seconds: float, threads: int, connections: int
) -> tuple[float, int]:
    """Requests/s and the number of requests wrk completed."""
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s"]
    if threads == 1:
        command = ["taskset", "-c", "1", *command]
    output = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if not match or not total:
        raise RuntimeError(f"wrk printed no rate:\n{output}")
    errors = re.search(r"Socket errors: .*|Non-2xx or 3xx responses: \d+", output)
    if errors and "Non-2xx" not in errors.group(0):
        print(f"  wrk: {errors.group(0)}", file=sys.stderr)
    return float(match.group(1)), int(total.group(1))


class Comparison(NamedTuple):
    bare_rate: float
    our_rate: float
    rate_ratio: float  # median of the rounds' ours/bare requests/s
    lowest_ratio: float
    highest_ratio: float
    bare_cpu_us: float  # server CPU time per request
    our_cpu_us: float
    cpu_ratio: float  # median of the rounds' bare/ours CPU time per request


def compare(
    wrk: str,
    kinds: tuple[str, str],
    log_path: str,
    rounds: int,
    seconds: float,
    envs: tuple[dict[str, str], dict[str, str]],
) -> Comparison:
    """Both kinds loaded in alternating rounds; medians of rates and ratios."""
    rates: list[list[float]] = [[], []]
    costs: list[list[float]] = [[], []]
    with (
        open(log_path, "ab") as log,
        server(kinds[0], log=log, env=envs[0]) as first,
        server(kinds[1], log=log, env=envs[1]) as second,
    ):
        servers = (first, second)
        for port, _ in servers:
            load(wrk, port, 1, 1, 32)  # warm up
        for round_number in range(rounds):
            for side in (0, 1) if round_number % 2 == 0 else (1, 0):
                os.truncate(log_path, 0)  # both append: they write at the end
                port, pid = servers[side]
                before = cpu_seconds(pid)
                rate, requests = load(wrk, port, seconds, 1, 32)
                rates[side].append(rate)
                costs[side].append((cpu_seconds(pid) - before) / requests * 1e6)
    (bare_rates, our_rates), (bare_costs, our_costs) = rates, costs
    ratios = [o / b for b, o in zip(bare_rates, our_rates, strict=True)]
    return Comparison(
        statistics.median(bare_rates),
        statistics.median(our_rates),
        statistics.median(ratios),
        min(ratios),
        max(ratios),
        statistics.median(bare_costs),
        statistics.median(our_costs),
        statistics.median(b / o for b, o in zip(bare_costs, our_costs, strict=True)),
    )


def worker_rates(wrk: str, rounds: int, seconds: float) -> dict[int, float]:
    rates: dict[int, list[float]] = {1: [], 2: []}
    quiet = {"BENCH_LOG_LEVEL": "WARNING"}
    for _ in range(rounds):
        for processes in rates:
            with server("sprockets-hello", processes, cpu=None, env=quiet) as (port, _):
                load(wrk, port, 1, 2, 64)
                rates[processes].append(load(wrk, port, seconds, 2, 64)[0])
    return {processes: statistics.median(r) for processes, r in rates.items()}


def scrape_times(workers: int, handlers: int, scrapes: int) -> list[float]:
    """Seconds each of ``scrapes`` scrapes of ``/metrics`` took, once every
    handler was requested a few times, with ``workers`` workers."""
    env = {"BENCH_LOG_LEVEL": "WARNING", "BENCH_ROUTES": str(handlers)}
    with server("sprockets-routes", workers, cpu=None, env=env) as (port, _):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(workers * 3):  # new connections land on every worker
            for n in range(handlers):
                fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                fresh.request("GET", f"/h/{n}")
                fresh.getresponse().read()
                fresh.close()
        times = []
        for _ in range(scrapes):
            started = time.perf_counter()
            connection.request("GET", "/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
            body = connection.getresponse().read()
            times.append(time.perf_counter() - started)
        connection.close()
    samples = body.count(b"\nhttp_request_duration_seconds_bucket")
    if not body.endswith(b"# EOF\n"):
        raise RuntimeError("the scrape is not OpenMetrics")
    if samples < handlers * 15:
        raise RuntimeError(f"the scrape holds {samples} duration buckets")
    return times


def stop_time(processes: int) -> float:
    """Seconds from SIGTERM to exit of an idle service, once fully ready."""
    ready = re.compile(
        rf"all {processes} workers ready" if processes > 1 else "serving on port"
    )
    process = subprocess.Popen(
        [sys.executable, SERVERS, "sprockets-hello", str(free_port()), str(processes)],
        cwd=ROOT,
        env={**os.environ, "BENCH_LOG_LEVEL": "INFO", "PYTHONPATH": ROOT},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if ready.search(line):
                break
        else:
            raise RuntimeError(f"{processes} process(es) never became ready")
        started = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        process.stderr.read()  # keep the pipe drained until it closes
        status = process.wait(30)
        elapsed = time.perf_counter() - started
    finally:
        kill_group(process)
    if status != 0:
        raise RuntimeError(f"{processes} process(es) exited with {status}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument(
        "--only", choices=("pairs", "workers", "scrape", "stop"), action="append"
    )
    options = parser.parse_args()
    parts = set(options.only or ("pairs", "workers", "scrape", "stop"))
    wrk = ensure_wrk()
    print(f"load average before: {os.getloadavg()[0]:.2f}")

    if "pairs" in parts:
        print(f"{options.rounds} alternating rounds of {options.seconds:g} s each")
        print(
            f"{'scenario':<34}{'bare req/s':>11}{'ours req/s':>11}{'ratio':>7}"
            f"{'min-max':>12}{'bare CPU':>10}{'ours CPU':>10}{'ratio':>7}"
        )
        with tempfile.TemporaryDirectory() as directory:
            log_path = os.path.join(directory, "records.log")
            hello = ("bare-hello", "sprockets-hello")
            for title, kinds, envs in [
                ("hello, asyncio", hello, ({}, {"LOOP": "asyncio"})),
                ("hello, ours on uvloop", hello, ({}, {"LOOP": "uvloop"})),
                (
                    "hello, asyncio, ours no xheaders",
                    hello,
                    ({}, {"LOOP": "asyncio", "BENCH_XHEADERS": "0"}),
                ),
                (
                    "HTTPError(404), asyncio",
                    ("bare-error", "sprockets-error"),
                    ({}, {"LOOP": "asyncio"}),
                ),
                (
                    "bare: xheaders on / off",
                    ("bare-hello", "bare-hello"),
                    ({}, {"BENCH_XHEADERS": "1"}),
                ),
            ]:
                result = compare(
                    wrk, kinds, log_path, options.rounds, options.seconds, envs
                )
                print(
                    f"{title:<34}{result.bare_rate:>11.0f}{result.our_rate:>11.0f}"
                    f"{result.rate_ratio:>7.3f}"
                    f"{result.lowest_ratio:>6.2f}-{result.highest_ratio:<5.2f}"
                    f"{result.bare_cpu_us:>8.1f}us"
                    f"{result.our_cpu_us:>8.1f}us{result.cpu_ratio:>7.3f}"
                )

    if "workers" in parts:
        rates = worker_rates(wrk, max(1, options.rounds // 2), options.seconds)
        print(f"{'workers':<34}{'1 process':>12}{'2 workers':>12}")
        print(
            f"{'hello JSON req/s (wrk -t2 -c64)':<34}{rates[1]:>12.0f}{rates[2]:>12.0f}"
        )
    if "scrape" in parts:
        times = sorted(scrape_times(4, 50, 50))
        print(
            f"{'/metrics, 4 workers, 50 handlers':<34}"
            f"median {statistics.median(times) * 1000:.1f} ms, "
            f"max {times[-1] * 1000:.1f} ms over {len(times)} scrapes"
        )
    if "stop" in parts:
        stops = {
            processes: statistics.median(stop_time(processes) for _ in range(5))
            for processes in (1, 2)
        }
        print(
            f"{'SIGTERM to exit, idle (median/5)':<34}"
            f"{stops[1] * 1000:>10.0f}ms{stops[2] * 1000:>10.0f}ms"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
