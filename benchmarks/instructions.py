"""Instructions per request of the benchmark's servers, as users run them.

``python benchmarks/instructions.py [KIND ...]`` serves each ``KIND`` of
``servers.py`` (default: ``bare-hello`` and ``sprockets-hello``) under
``valgrind --tool=callgrind``, twice at once: one copy answers 200
keep-alive requests, the other 1000, from a client in another process.
The difference of the two copies' instruction totals, divided by 800, is
what one request costs the server: start-up and shutdown cancel out, and
the figure is the same from one run to the next however busy the machine
is, where requests/s on a shared machine are not (see
``docs/performance.rst``).  ``BENCH_SAMPLING=0`` leaves out the work
done on timers, which valgrind's slowness would otherwise count as
per-request work.  Set ``LOOP`` as for any service (``asyncio`` by default
here).  Each kind takes a minute or two.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402

COUNTS = (200, 1000)


def _client(port: int, count: int) -> None:
    """``count`` keep-alive requests of ``/``, each read whole."""
    deadline = time.monotonic() + 120  # valgrind starts slowly
    while True:
        try:
            connection = socket.create_connection(("127.0.0.1", port), timeout=60)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    pending = b""
    with connection:
        for _ in range(count):
            connection.sendall(request)
            while b"\r\n\r\n" not in pending:
                pending += connection.recv(65536)
            head, _, pending = pending.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
            while len(pending) < length:
                pending += connection.recv(65536)
            pending = pending[length:]


def _instructions(kind: str, count: int, port: int) -> int:
    """Instructions a server of ``kind`` on ``port`` executes answering
    ``count`` requests."""
    with tempfile.TemporaryDirectory() as scratch:
        log = os.path.join(scratch, "valgrind.log")
        process = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                f"--log-file={log}",
                sys.executable,
                run.SERVERS,
                kind,
                str(port),
            ],
            cwd=run.ROOT,
            env={
                "LOOP": "asyncio",
                **os.environ,
                "PYTHONPATH": run.ROOT,
                "BENCH_SAMPLING": "0",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _client(port, count)
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
        finally:
            run.kill_group(process)
        with open(log) as text:
            found = re.search(r"Collected : (\d+)", text.read())
    if found is None:
        raise RuntimeError(f"valgrind counted nothing for {kind}")
    return int(found[1])


def per_request(kind: str) -> int:
    """Instructions per request of ``kind`` (see the module's docs)."""
    ports = set()
    while len(ports) < len(COUNTS):  # two copies must not pick the same one
        ports.add(run.free_port())
    with ThreadPoolExecutor(len(COUNTS)) as pool:
        fewer, more = pool.map(_instructions, [kind] * len(COUNTS), COUNTS, ports)
    return (more - fewer) // (COUNTS[1] - COUNTS[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kinds", nargs="*", default=["bare-hello", "sprockets-hello"])
    options = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed: apt-get install valgrind")
    figures = {kind: per_request(kind) for kind in options.kinds}
    for kind, figure in figures.items():
        # sprockets-X against bare-X, when both were counted.
        base = figures.get("bare-" + kind.partition("-")[2])
        against = f"{(figure / base - 1) * 100:+.1f} % vs bare" if base else ""
        print(f"{kind:<24}{figure:>12,}  {against}")


if __name__ == "__main__":
    main()
