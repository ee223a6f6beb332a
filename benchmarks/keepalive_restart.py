"""Count the requests keep-alive clients lose across rolling restarts.

``python benchmarks/keepalive_restart.py`` starts the two-worker service of
the worker tests, runs clients that each reuse one connection (as pools and
proxies do) in a loop, sends SIGHUP ``--restarts`` times (waiting each time
until the old workers exited, then ``--dwell`` seconds), and prints how many
requests failed out of how many, and how they failed.

``--think`` is the pause of each client between two requests: a client that
pauses longer than :data:`sprockets_http.drain.KEEP_ALIVE_QUIET` finds its
idle connection closed, which a client that checks its pooled connections
before reuse (urllib3, browsers, nginx) notices and this one does not.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import re
import signal
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from support import Service, free_port  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--think", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--dwell", type=float, default=1.0, metavar="SECONDS")
    args = parser.parse_args()

    port = free_port()
    service = Service(
        ["-m", "tests.apps.workers_app"], env={"WORKERS": "2", "PORT": str(port)}
    )
    answered = 0
    failures: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    done = threading.Event()

    def client() -> None:
        nonlocal answered
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not done.is_set():
            try:
                connection.request("GET", "/")
                connection.getresponse().read()
                with lock:
                    answered += 1
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                with lock:
                    failures[type(error).__name__] += 1
            time.sleep(args.think)
        connection.close()

    try:
        service.wait_for("all 2 workers ready")
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for _ in range(args.restarts):
            mark = len(service.lines)
            service.send(signal.SIGHUP)
            service.wait_for("rolling restart finished", start=mark, timeout=60)
            replaced = re.findall(
                r"started to replace worker (\d+)", "".join(service.lines[mark:])
            )
            for pid in replaced:
                service.wait_for(f"worker {pid} exited", start=mark, timeout=60)
            time.sleep(args.dwell)
        done.set()
        for thread in threads:
            thread.join()
        service.send(signal.SIGTERM)
        service.wait(60)
    finally:
        service.kill_group()
    total = answered + sum(failures.values())
    print(
        f"{args.restarts} SIGHUPs, {args.clients} keep-alive clients, "
        f"think {args.think} s: {sum(failures.values())} of {total} requests "
        f"failed {dict(failures)}"
    )


if __name__ == "__main__":
    main()
