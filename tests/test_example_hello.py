"""``python -m examples.hello``, the service ``make run`` starts."""

from __future__ import annotations

import json
import signal

from support import Service, http_get


def test_hello_serves_its_routes_and_stops_cleanly(services: type[Service]) -> None:
    service = services(["-m", "examples.hello"])
    port = service.wait_serving()
    service.wait_for("hello is serving")

    status, headers, body = http_get(port, "/")
    assert status == 200
    assert headers["Server"] == "hello/1.0.0"
    assert json.loads(body)["hello"] == "world"

    status, headers, body = http_get(port, "/fail")
    assert status == 500
    assert json.loads(body) == {
        "type": None,
        "message": "Internal Server Error",
        "traceback": None,
        "request_id": headers["X-Request-Id"],
    }
    assert "hunter2" in service.wait_for("the database password").string

    status, _, body = http_get(port, "/teapot")
    assert status == 418
    document = json.loads(body)
    assert document["message"] == "only tea is brewed here"
    assert document["pot"] == "stout"

    assert http_get(port, "/health")[0] == 200

    service.send(signal.SIGTERM)
    assert service.wait() == 0
    assert service.count(r"said hello \d+ time") >= 1
