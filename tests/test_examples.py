"""The extension examples, served as real processes and stopped by SIGTERM."""

from __future__ import annotations

import json
import signal

from support import Service, free_port, http_get


def test_the_pooled_http_client_serves_then_closes_in_order(
    services: type[Service],
) -> None:
    port = free_port()
    service = services(
        ["-m", "examples.http_client_pool"],
        env={"PORT": str(port), "UPSTREAM_URL": f"http://127.0.0.1:{port}/status"},
    )
    service.wait_serving()

    status, _, body = http_get(port, "/upstream")
    _, _, direct = http_get(port, "/status")
    service.send(signal.SIGTERM)

    assert status == 200
    assert json.loads(body) == {
        "url": f"http://127.0.0.1:{port}/status",
        "status": 200,
        "bytes": len(direct),
    }
    assert json.loads(direct) == {
        "extensions": {"http-client": {"version": "1.0.0", "state": "running"}}
    }
    assert service.wait() == 0
    assert service.count("HTTP client pool open for 10 requests at once") == 1
    service.wait_for("HTTP client pool closed")


def test_an_extension_published_by_an_installed_package_is_discovered(
    services: type[Service],
) -> None:
    service = services(
        ["-m", "sprockets_http", "--log-format", "text", "tests.apps.cli_app:make_app"],
        env={"TEST_EXTENSIONS": "heartbeat"},
    )
    port = service.wait_serving()
    service.wait_for("heartbeat every 30.0 s")

    status, _, body = http_get(port, "/status")
    service.send(signal.SIGTERM)

    assert status == 200
    assert json.loads(body) == {
        # no version of its own: the package's version is reported
        "extensions": {"heartbeat": {"version": "1.0.0", "state": "running"}}
    }
    assert service.wait() == 0
    shut_down = service.wait_for("cli_app shut down").string
    stopped = service.wait_for(r"heartbeat stopped after 0 beat\(s\)").string
    # extensions stop after the plain shutdown callbacks
    assert service.lines.index(shut_down) < service.lines.index(stopped)


def test_an_unknown_extension_name_fails_the_start_listing_those_installed(
    services: type[Service],
) -> None:
    service = services(
        ["-m", "sprockets_http", "--log-format", "text", "tests.apps.cli_app:make_app"],
        env={"TEST_EXTENSIONS": "heartbeet"},
    )

    assert service.wait() == 70
    assert "no installed package publishes an extension named 'heartbeet'" in (
        service.output
    )
    assert "available: 'heartbeat'" in service.output
    assert service.count("serving on port") == 0
