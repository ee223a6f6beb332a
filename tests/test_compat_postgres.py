"""A sprockets-postgres service runs on sprockets_http against a real PostgreSQL.

sprockets-postgres 1.8.1 declares ``sprockets.http<3``, so it is not among
this project's test dependencies: ``make compat`` installs it (without its
dependencies) next to this project, and these tests are skipped wherever it,
``aiopg`` or ``psycopg2`` is missing.  The database server is started here
from the machine's PostgreSQL programs (see :mod:`postgres_cluster`); the
tests that need one are skipped when there are none.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import time
from collections.abc import Iterator

import pytest
from postgres_cluster import Cluster, server_programs
from support import Service, free_port, http_get

MISSING = [
    name
    for name in ("sprockets_postgres", "aiopg", "psycopg2")
    if importlib.util.find_spec(name) is None
]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"not installed: {', '.join(MISSING)} (make compat)"
)
SERVICE = ["-m", "tests.apps.postgres_app"]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bindir = server_programs()
    if bindir is None:
        pytest.skip("no PostgreSQL server programs (initdb) on this machine")
    with Cluster(bindir) as started:
        yield started


def wait_connected(port: int, timeout: float = 15.0) -> None:
    """Wait until sprockets-postgres's status handler reports its pool."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = http_get(port, "/status")
        if status == 200:
            return
        assert time.monotonic() < deadline, f"still {status}: {body!r}"
        time.sleep(0.05)


def test_serves_a_query_and_stops_cleanly_on_sigterm(
    services: type[Service], cluster: Cluster
) -> None:
    service = services(SERVICE, env={"POSTGRES_URL": cluster.url})
    port = service.wait_serving()
    wait_connected(port)

    status, _, body = http_get(port, "/answer")
    service.send(signal.SIGTERM)

    assert (status, json.loads(body)) == (200, {"answer": 42})
    assert service.wait() == 0, service.output
    assert service.count(rf"stopped \(pid {service.pid}\)") == 1
    assert service.count("Traceback|CRITICAL") == 0, service.output


def test_stops_by_itself_when_the_database_cannot_be_reached(
    services: type[Service],
) -> None:
    # Nothing listens on the port: sprockets-postgres logs a critical line
    # and calls app.stop(io_loop) from its on_start callback.
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    service = services(SERVICE, env={"POSTGRES_URL": url})
    service.wait_serving()

    service.wait_for("PostgreSQL failed to connect, shutting down")
    assert service.wait() == 0, service.output
    assert service.count(rf"stopped \(pid {service.pid}\)") == 1
    assert service.count("Traceback") == 0, service.output
