"""Logs an operator can filter, request ids, the loop: real processes, real HTTP.

Every service is ``tests/apps/observe_app.py`` served by the command line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from support import ROOT, Service, http_get

FACTORY = "tests.apps.observe_app:make_app"
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


def serve(services: type[Service], *args: str, **env: str) -> tuple[Service, int]:
    service = services(
        ["-m", "sprockets_http", "--procs", "1", *args, FACTORY],
        env={"SHUTDOWN_LIMIT": "2", **env},
    )
    return service, service.wait_serving()


def stop(service: Service) -> list[dict[str, Any]]:
    """SIGTERM the service; every line it logged, each a JSON object."""
    service.send(signal.SIGTERM)
    assert service.wait() == 0, service.output
    return [json.loads(line) for line in service.lines]


def with_id(records: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("request_id") == request_id]


def test_a_json_access_record_has_every_field_with_its_type(
    services: type[Service],
) -> None:
    service, port = serve(services)
    status, headers, body = http_get(
        port, "/?token=s3cret", {"X-Request-Id": "req-1", "User-Agent": "probe/1"}
    )
    assert status == 200
    assert headers["X-Request-Id"] == "req-1"
    records = stop(service)

    (access,) = [
        r for r in with_id(records, "req-1") if r["logger"] == "tornado.access"
    ]
    fields = {
        "method": "GET",
        "path": "/",
        "status": 200,
        "remote_ip": "127.0.0.1",
        "user_agent": "probe/1",
        "bytes_sent": len(body),
        "request_id": "req-1",
        "handler": "tests.apps.observe_app.Hello",
    }
    assert {name: access[name] for name in fields} == fields
    assert type(access["status"]) is int and type(access["bytes_sent"]) is int
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] > 0
    assert access["level"] == "INFO"
    assert "query" not in access
    assert "s3cret" not in json.dumps(records)  # the query appears nowhere


def test_extra_fields_survive_as_json_members(services: type[Service]) -> None:
    service, port = serve(services)
    http_get(port, "/", {"X-Request-Id": "req-extra"})
    (record,) = [
        r for r in with_id(stop(service), "req-extra") if r["logger"] == "observe_app"
    ]
    assert record["message"] == "hello from the handler"
    # A list stays a list; an object JSON cannot hold is written as its repr.
    assert (record["order"], record["tags"], record["thing"]) == (
        7,
        ["a", "b"],
        "<Unserialisable>",
    )


def test_one_request_shares_one_id_across_application_error_and_access_lines(
    services: type[Service],
) -> None:
    service, port = serve(services)
    status, headers, body = http_get(port, "/fail")
    assert status == 500
    request_id = headers["X-Request-Id"]
    assert GENERATED_ID.fullmatch(request_id)
    assert json.loads(body)["request_id"] == request_id
    status, headers, body = http_get(port, "/problem", {"Correlation-Id": "corr-9"})
    assert (status, headers["X-Request-Id"], headers["Correlation-Id"]) == (
        409,
        "corr-9",
        "corr-9",
    )
    assert json.loads(body)["request_id"] == "corr-9"
    records = stop(service)

    shared = with_id(records, request_id)
    assert [(r["logger"], r["level"]) for r in shared] == [
        ("observe_app", "INFO"),  # the handler's own line, after an await
        ("Fail", "ERROR"),  # ErrorLogger's, with the traceback
        ("tornado.access", "ERROR"),
    ]
    assert "handler exploded" in shared[1]["exception"]
    # No other record carries it: ids do not leak into the next request.
    assert len([r for r in records if r.get("request_id") == request_id]) == 3
    assert [r["logger"] for r in with_id(records, "corr-9")] == [
        "Problem",
        "tornado.access",
    ]


HOSTILE_IDS = {
    "folded line": b"evil-marker\r\n  INFO forged-marker",
    "10 kB": b"x" * 10_000 + b"-marker",
    "non-ASCII": "caf\u00e9-marker".encode(),
    "quotes": b"a\"b'c-marker",
    "NEL": b"nel\xc2\x85-marker",
    "too long by one": b"y" * 129,
}


@pytest.mark.parametrize("raw", HOSTILE_IDS.values(), ids=HOSTILE_IDS.keys())
def test_a_hostile_request_id_is_replaced_never_echoed_nor_logged(
    services: type[Service], raw: bytes
) -> None:
    service, port = serve(services)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"X-Request-Id: " + raw + b"\r\n\r\n"
        )
        response = b""
        while chunk := client.recv(65536):
            response += chunk
    head = response.split(b"\r\n\r\n")[0].decode("latin-1")
    assert "marker" not in head
    if head.startswith("HTTP/1.1 400"):  # Tornado's parser refused it first
        stop(service)
        assert "marker" not in service.output
        return
    assert head.startswith("HTTP/1.1 200"), head
    echoed = re.search(r"^X-Request-Id: (.*)$", head, re.M | re.I)
    assert echoed and GENERATED_ID.fullmatch(echoed.group(1).strip()), head
    records = stop(service)
    assert len(with_id(records, echoed.group(1).strip())) == 2  # app + access
    assert "marker" not in service.output
    assert "y" * 129 not in service.output


def test_text_lines_show_fields_as_key_values(services: type[Service]) -> None:
    service, port = serve(services, "--log-format", "text")
    http_get(port, "/", {"X-Request-Id": "req-text"})
    service.send(signal.SIGTERM)
    assert service.wait() == 0
    app_line = service.wait_for(r"observe_app: hello from the handler").string
    assert re.search(
        r"order=7 tags=\"\['a', 'b'\]\" thing=<Unserialisable> request_id=req-text$",
        app_line,
    ), app_line
    access = service.wait_for(r"tornado\.access: ").string
    assert '"GET / HTTP/1.1" 200 "OK"' in access
    assert access.rstrip().endswith(") request_id=req-text"), access  # once


def test_stderr_on_a_terminal_gets_text_lines() -> None:
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "sprockets_http", "--procs", "1", FACTORY],
        cwd=ROOT,
        env={**os.environ, "PORT": "0", "PYTHONPATH": ROOT},
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    try:
        seen = b""
        deadline = time.monotonic() + 15
        while b"serving on port" not in seen and time.monotonic() < deadline:
            if select.select([primary], [], [], 1)[0]:
                seen += os.read(primary, 65536)
        line = next(
            (text for text in seen.decode().splitlines() if "serving on port" in text),
            seen.decode(),
        )
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO ", line), line
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
        os.close(primary)


def test_the_health_checks_503_during_a_drain_is_logged_at_info(
    services: type[Service],
) -> None:
    service, port = serve(services, SHUTDOWN_DELAY="2")
    assert http_get(port, "/health")[0] == 200
    service.send(signal.SIGTERM)
    service.wait_for("health check failing")
    assert http_get(port, "/health")[0] == 503
    assert service.wait() == 0
    records = [json.loads(line) for line in service.lines]
    health = [r for r in records if r.get("path") == "/health"]
    # The 200 went to DEBUG, below the INFO the service logs at.
    assert [(r["status"], r["level"]) for r in health] == [(503, "INFO")]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--loop", "asyncio"], {}, "asyncio"),
        ([], {"LOOP": "asyncio"}, "asyncio"),
        pytest.param(
            [],
            {},
            "uvloop",
            marks=pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop not installed"),
        ),
        pytest.param(
            ["--loop", "uvloop"],
            {},
            "uvloop",
            marks=pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop not installed"),
        ),
        pytest.param(
            [],
            {},
            "asyncio",
            marks=pytest.mark.skipif(HAS_UVLOOP, reason="uvloop installed"),
        ),
    ],
)
def test_the_loop_asked_for_serves_and_is_named(
    services: type[Service], args: list[str], env: dict[str, str], expected: str
) -> None:
    service, port = serve(services, *args, **env)
    assert service.wait_for(r"serving on port \d+ \(pid \d+\) with (\w+) at ").group(
        1
    ) == (expected)
    _, _, body = http_get(port, "/loop")
    assert json.loads(body)["loop"].partition(".")[0] == expected
    stop(service)


@pytest.mark.skipif(HAS_UVLOOP, reason="uvloop installed")
def test_uvloop_asked_for_but_missing_is_a_usage_error(
    services: type[Service],
) -> None:
    service = services(["-m", "sprockets_http", "--loop", "uvloop", FACTORY])
    assert service.wait() == 2
    assert "uvloop is not installed" in service.output
