"""What watching for blocked event loops costs: hello req/s with and without.

``python benchmarks/heartbeat.py [--rounds N] [--seconds S]`` serves the
sprockets hello service (``benchmarks/servers.py``) twice at once, one with
the default ``worker_timeout`` (30 s: workers beat to their supervisor, one
process runs a watchdog thread) and one with ``WORKER_TIMEOUT=0``, for one
process and for two workers.  Each server is pinned to CPU 0 (its workers
too) and wrk (one thread, 32 connections) to CPU 1; rounds alternate which
one is loaded first, and the ratio reported is the median of the rounds'
with/without ratios, with their lowest and highest, so that drift of the
machine's speed hits both sides alike.  It needs wrk, as ``run.py`` does.

Throughput on a shared machine moves by more than the heartbeat can cost,
so it also reports what the heartbeat costs by itself: the CPU time the
idle service (the parent and its workers) uses per second, with and
without, measured from ``/proc`` over ``--idle`` seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from run import ROOT, SERVERS, ensure_wrk, free_port, kill_group, load
from run import wait_until_answering as wait_answering

VARIANTS = {"with": "30", "without": "0"}  # WORKER_TIMEOUT


@contextmanager
def server(processes: int, worker_timeout: str) -> Iterator[tuple[int, int]]:
    """The hello service on CPU 0 with this ``WORKER_TIMEOUT``; port, pid."""
    port = free_port()
    command = [sys.executable, SERVERS, "sprockets-hello", str(port), str(processes)]
    process = subprocess.Popen(
        ["taskset", "-c", "0", *command],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT, "WORKER_TIMEOUT": worker_timeout},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_answering(port)
        yield port, process.pid  # taskset execs the service: same pid
    finally:
        kill_group(process)


def measure(
    wrk: str, processes: int, rounds: int, seconds: float
) -> dict[str, list[float]]:
    """Requests/s of each variant, one figure per round."""
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    with (
        server(processes, VARIANTS["with"]) as with_port,
        server(processes, VARIANTS["without"]) as without_port,
    ):
        ports = {"with": with_port[0], "without": without_port[0]}
        for port in ports.values():
            load(wrk, port, 1, 1, 32)  # warm up
        for round_number in range(rounds):
            order = list(VARIANTS)[:: 1 if round_number % 2 == 0 else -1]
            for variant in order:
                rates[variant].append(load(wrk, ports[variant], seconds, 1, 32)[0])
    return rates


def group_cpu(pid: int) -> float:
    """CPU seconds used so far by every thread of ``pid`` and its children.

    From ``schedstat``, in nanoseconds: the clock ticks of ``stat`` are too
    coarse for an idle process.
    """
    pids = [pid]
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stream:
                if int(stream.read().rsplit(")", 1)[1].split()[1]) == pid:
                    pids.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    total = 0
    for process in pids:
        for thread in os.listdir(f"/proc/{process}/task"):
            with open(f"/proc/{process}/task/{thread}/schedstat") as stream:
                total += int(stream.read().split()[0])
    return total / 1e9


def idle_cost(processes: int, seconds: float) -> dict[str, float]:
    """Milliseconds of CPU per second the idle service uses, per variant."""
    cost = {}
    for variant, worker_timeout in VARIANTS.items():
        with server(processes, worker_timeout) as (_, pid):
            time.sleep(1)  # let the start settle
            before = group_cpu(pid)
            time.sleep(seconds)
            cost[variant] = (group_cpu(pid) - before) / seconds * 1000
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--idle", type=float, default=20.0)
    options = parser.parse_args()
    wrk = ensure_wrk()

    print(f"{options.rounds} alternating rounds of {options.seconds:g} s each")
    print(
        f"{'hello JSON req/s':<18}{'with':>9}{'without':>9}"
        f"{'ratio':>8}{'lowest':>8}{'highest':>8}"
    )
    for processes, title in [(1, "1 process"), (2, "2 workers")]:
        rates = measure(wrk, processes, options.rounds, options.seconds)
        ratios = [w / wo for w, wo in zip(rates["with"], rates["without"], strict=True)]
        print(
            f"{title:<18}{statistics.median(rates['with']):>9.0f}"
            f"{statistics.median(rates['without']):>9.0f}"
            f"{statistics.median(ratios):>8.3f}{min(ratios):>8.3f}{max(ratios):>8.3f}"
        )

    print(f"{'idle CPU ms/s':<18}{'with':>9}{'without':>9}")
    for processes, title in [(1, "1 process"), (2, "2 workers")]:
        cost = idle_cost(processes, options.idle)
        print(f"{title:<18}{cost['with']:>9.3f}{cost['without']:>9.3f}")


if __name__ == "__main__":
    main()
