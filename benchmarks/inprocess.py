"""CPU time per request of the serving stack, without the network's noise.

``python benchmarks/inprocess.py [--requests N] [--rounds R]`` serves
requests over a socket pair, inside one process: a client on the same loop
writes a keep-alive request, reads the whole answer and writes the next.
The kernel's share is then a small, equal part for every variant, so what
differs between them is Python code: where ``run.py`` measures a service
as users meet it (and this machine's loopback costs several hundred
microseconds a request), this one tells where the microseconds of our
stack go.  Each variant runs ``R`` rounds of ``N`` requests, in turn; the
figures are the median CPU time per request and its spread.

The variants:

``tornado``
    ``tornado.web.Application`` on ``tornado.httpserver.HTTPServer``
    (Tornado's defaults), its access line written as text, as
    ``logging.basicConfig()`` writes it;
``sprockets``
    ``sprockets_http.app.Application`` on the runner's
    :class:`~sprockets_http.drain.DrainingHTTPServer`, with ErrorLogger and
    ErrorWriter in the handler, JSON access records, request ids, a
    :class:`~sprockets_http.metrics.MetricsHandler` mounted (when
    prometheus_client is installed), the peer on loopback (so trusted with
    ``xheaders``);
``no-metrics`` / ``no-xheaders``
    the same without the metrics handler, or with ``xheaders`` off.

``--only VARIANT`` runs one variant, for a count of the instructions it
executes: run it under ``valgrind --tool=callgrind`` with two numbers of
requests; the difference of the totals, divided by the difference of the
numbers, is the instructions per request, the same from one run to the
next whatever else the machine does.

Records go to ``/dev/null``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import resource
import socket
import statistics
import tempfile
from collections.abc import Callable
from typing import Any

from tornado import httpserver, iostream, web

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: inprocess\r\n\r\n"


class BareHello(web.RequestHandler):
    def get(self) -> None:
        self.write({"hello": "world"})


def tornado_server() -> httpserver.HTTPServer:
    _log_to_devnull(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    return httpserver.HTTPServer(web.Application([("/", BareHello)]))


def sprockets_server(
    metrics: bool = True, xheaders: bool = True
) -> httpserver.HTTPServer:
    from sprockets_http import app, drain, logconfig, mixins
    from sprockets_http import metrics as metrics_module

    class Hello(mixins.ErrorLogger, mixins.ErrorWriter, web.RequestHandler):
        def get(self) -> None:
            self.write({"hello": "world"})

    _log_to_devnull(logconfig.JSONFormatter())
    handlers: list[Any] = [("/", Hello)]
    if metrics and importlib.util.find_spec("prometheus_client") is not None:
        handlers.append(("/metrics", metrics_module.MetricsHandler))
    application = app.Application(handlers, xheaders=xheaders)
    server = drain.DrainingHTTPServer(application, xheaders=xheaders)
    if application._recorder is not None:  # as the runner does once serving
        application._recorder.serving()
    return server


def _stop_timed_sampling() -> None:
    if importlib.util.find_spec("prometheus_client") is not None:
        from sprockets_http import metrics as metrics_module

        metrics_module._sampler.start = lambda: None  # type: ignore[method-assign]


def _log_to_devnull(formatter: logging.Formatter) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _user_seconds() -> float:
    # User time only: on some virtual machines a send() on a socket pair
    # costs hundreds of microseconds of system time, the same for every
    # variant, which would bury the differences.
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


async def serve_requests(server: httpserver.HTTPServer, count: int) -> float:
    """User CPU seconds ``server`` and the client took for ``count`` requests."""
    ours, theirs = socket.socketpair()
    server.handle_stream(iostream.IOStream(ours), ("127.0.0.1", 40000))
    client = iostream.IOStream(theirs)
    try:
        started = _user_seconds()
        for _ in range(count):
            await client.write(REQUEST)
            headers = await client.read_until(b"\r\n\r\n")
            length = int(headers.split(b"Content-Length: ", 1)[1].split(b"\r\n")[0])
            await client.read_bytes(length)
        return _user_seconds() - started
    finally:
        client.close()


def measure(
    variants: dict[str, Callable[[], httpserver.HTTPServer]], rounds: int, count: int
) -> dict[str, list[float]]:
    """Microseconds per request of each variant, one figure a round."""
    results: dict[str, list[float]] = {name: [] for name in variants}
    for round_number in range(rounds):
        order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
        for name in order:
            server = variants[name]()
            seconds = asyncio.run(serve_requests(server, count))
            results[name].append(seconds / count * 1e6)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--only",
        choices=("tornado", "sprockets", "no-metrics", "no-xheaders"),
        help="run this variant alone (e.g. under valgrind, see docs/performance.rst)",
    )
    options = parser.parse_args()
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp())
    variants: dict[str, Callable[[], httpserver.HTTPServer]] = {
        "tornado": tornado_server,
        "sprockets": sprockets_server,
        "no-metrics": lambda: sprockets_server(metrics=False),
        "no-xheaders": lambda: sprockets_server(xheaders=False),
    }
    if options.only:
        variants = {options.only: variants[options.only]}
        _stop_timed_sampling()
    results = measure(variants, options.rounds, options.requests)
    base = statistics.median(results.get("tornado") or results[options.only])
    print(
        f"{options.rounds} rounds of {options.requests} requests; "
        "user CPU time, the client's included"
    )
    print(f"{'variant':<26}{'µs/request':>11}{'spread':>16}{'vs tornado':>12}")
    for name, figures in results.items():
        median = statistics.median(figures)
        print(
            f"{name:<26}{median:>11.1f}"
            f"{min(figures):>8.1f}-{max(figures):<7.1f}{median - base:>+12.1f}"
        )


if __name__ == "__main__":
    main()
