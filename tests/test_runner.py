"""The runner as users meet it: a real process, real signals, real sockets."""

from __future__ import annotations

import http.client
import importlib.util
import json
import signal
import socket
import threading

import pytest
from support import Service, http_get

APP = ["-m", "tests.apps.lifecycle_app"]


def events(service: Service) -> list[str]:
    return [
        line.split("event: ", 1)[1].strip()
        for line in service.lines
        if line.startswith("event: ")
    ]


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_runs_every_callback_and_exits_zero(
    services: type[Service], signo: int
) -> None:
    service = services(APP)
    port = service.wait_serving()
    service.wait_for("event: on_start")
    assert http_get(port, "/state")[2] == b'{"ready": true}'

    service.send(signo)

    assert service.wait() == 0
    assert events(service) == [
        "before_run async done",
        "on_start",
        "shutdown sync failing",
        "shutdown future done",
        "shutdown async done",
    ]
    # The failing shutdown callback is logged with its traceback.
    assert "boom-shutdown" in service.output
    assert "Traceback" in service.output


def test_async_before_run_finishes_before_serving(services: type[Service]) -> None:
    service = services(APP)
    service.wait_serving()
    before = service.count("before_run async done")
    assert before == 1, "serving was announced before before_run finished"


@pytest.mark.parametrize(
    "loop",
    [
        "asyncio",
        pytest.param(
            "uvloop",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("uvloop") is None,
                reason="uvloop not installed",
            ),
        ),
    ],
)
def test_a_stop_signal_during_before_run_stops_without_serving(
    services: type[Service], loop: str
) -> None:
    # While the loop does not run: uvloop used to lose a signal then.
    service = services(APP, {"LOOP": loop, "SLOW_BEFORE_RUN": "0.5"})
    service.wait_for("event: before_run sync sleeping")

    service.send(signal.SIGTERM)

    assert service.wait() == 0
    assert events(service) == [
        "before_run async done",
        "before_run sync sleeping",
        "before_run sync done",
        "shutdown sync failing",
        "shutdown future done",
        "shutdown async done",
    ]
    assert "received SIGTERM, stopping" in service.output
    assert "serving on port" not in service.output


@pytest.mark.parametrize("during", ["serving", "before_run"])
def test_sighup_to_one_process_is_logged_and_ignored(
    services: type[Service], during: str
) -> None:
    # Left to its default action, SIGHUP (systemctl reload, a closed
    # terminal) would end the process at once: no drain, no callbacks.
    env = {"SLOW_BEFORE_RUN": "0.5"} if during == "before_run" else {}
    service = services(APP, env)
    if during == "before_run":
        service.wait_for("event: before_run sync sleeping")
    else:
        service.wait_serving()
        service.wait_for("event: on_start")

    service.send(signal.SIGHUP)

    service.wait_for(r"received SIGHUP, ignored \(pid \d+\): one process")
    port = service.wait_serving()
    assert http_get(port, "/state")[2] == b'{"ready": true}'
    service.send(signal.SIGTERM)
    assert service.wait() == 0
    assert events(service)[-3:] == [
        "shutdown sync failing",
        "shutdown future done",
        "shutdown async done",
    ]


def test_in_flight_request_finishes_before_shutdown_callbacks(
    services: type[Service],
) -> None:
    service = services(APP)
    port = service.wait_serving()
    result: dict[str, object] = {}

    def slow_request() -> None:
        result["response"] = http_get(port, "/slow?t=1")

    client = threading.Thread(target=slow_request)
    client.start()
    service.wait_for("event: slow request started")
    service.send(signal.SIGTERM)
    client.join(15)

    assert service.wait() == 0
    status, _, body = result["response"]  # type: ignore[misc]
    assert (status, body) == (200, b'{"slept": true}')
    output = service.output
    assert output.index('GET /slow HTTP/1.1\\" 200') < output.index(
        "event: shutdown sync failing"
    )


def test_idle_keep_alive_connection_does_not_hold_the_exit(
    services: type[Service],
) -> None:
    service = services(APP)
    port = service.wait_serving()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"GET /state HTTP/1.1\r\nHost: test\r\n\r\n")
        assert b"200 OK" in client.recv(65536)
        # The connection now sits idle; the default shutdown_limit is 5 s,
        # so waiting for it would show up as a slow exit and a late close.
        service.send(signal.SIGTERM)
        assert client.recv(65536) == b"", "the server did not close the idle connection"
        assert service.wait(timeout=4) == 0


def test_a_connection_that_never_sends_a_request_does_not_hold_the_exit(
    services: type[Service],
) -> None:
    # A browser or proxy may open a connection ahead of need.  It gets a
    # second to send a request, not the whole (here 30 s) shutdown_limit.
    service = services(APP, env={"SHUTDOWN_LIMIT": "30"})
    port = service.wait_serving()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        service.wait_for("event: on_start")
        service.send(signal.SIGTERM)
        assert client.recv(65536) == b""
        assert service.wait(timeout=10) == 0


def test_shutdown_limit_cuts_off_requests_that_take_longer(
    services: type[Service],
) -> None:
    service = services(APP, env={"SHUTDOWN_LIMIT": "0.2"})
    port = service.wait_serving()
    outcome: list[object] = []

    def slow_request() -> None:
        try:
            outcome.append(http_get(port, "/slow?t=3")[0])
        except (OSError, http.client.HTTPException) as error:
            outcome.append(error)

    client = threading.Thread(target=slow_request)
    client.start()
    service.wait_for("event: slow request started")
    service.send(signal.SIGTERM)

    assert service.wait() == 0
    client.join(10)
    assert outcome and not isinstance(outcome[0], int), outcome
    assert "closing 1 connection(s) still open after 0.2 s" in service.output
    assert service.count("event: shutdown async done") == 1


def test_second_signal_stops_waiting_for_in_flight_requests(
    services: type[Service],
) -> None:
    service = services(APP)
    port = service.wait_serving()
    errors: list[BaseException] = []

    def slow_request() -> None:
        try:
            http_get(port, "/slow?t=30")
        except OSError as error:
            errors.append(error)

    client = threading.Thread(target=slow_request)
    client.start()
    service.wait_for("event: slow request started")
    service.send(signal.SIGTERM)
    service.wait_for("received SIGTERM")
    service.send(signal.SIGINT)

    assert service.wait(timeout=10) == 0
    client.join(10)
    assert "received SIGINT again, not waiting any longer" in service.output
    assert service.count("event: shutdown async done") == 1


def test_before_run_failure_exits_70_after_shutdown_callbacks(
    services: type[Service],
) -> None:
    service = services(APP, env={"FAIL_BEFORE_RUN": "1"})

    assert service.wait() == 70
    output = service.output
    assert "boom-before-run" in output
    assert "Traceback" in output
    assert "serving on port" not in output
    assert "on_start" not in events(service)
    assert events(service)[-1] == "shutdown async done"


def test_plain_tornado_application_through_runner(services: type[Service]) -> None:
    service = services(APP, env={"PLAIN_TORNADO": "1"})
    port = service.wait_serving()
    service.wait_for("event: on_start")
    assert http_get(port, "/state")[0] == 200

    service.send(signal.SIGTERM)

    assert service.wait() == 0
    assert events(service)[-1] == "shutdown async done"


def test_port_from_environment(services: type[Service]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    service = services(APP, env={"PORT": str(free_port)})
    assert service.wait_serving() == free_port
    service.send(signal.SIGTERM)
    assert service.wait() == 0


def test_the_port_setting_beats_the_environment_even_when_0(
    services: type[Service],
) -> None:
    # 0 asks the kernel for a free port; PORT must not even be read.
    service = services(APP, env={"SETTINGS_PORT": "0", "PORT": "eighty"})
    assert service.wait_serving() > 0
    service.send(signal.SIGTERM)
    assert service.wait() == 0


def test_malformed_port_is_a_usage_error(services: type[Service]) -> None:
    service = services(APP, env={"PORT": "eighty"})
    assert service.wait() == 2
    assert "PORT must be a port number, not 'eighty'" in service.output
    assert "Traceback" not in service.output


def test_port_in_use_exits_1_with_a_clear_message(services: type[Service]) -> None:
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = services(APP, env={"PORT": str(port)})
        assert service.wait() == 1
    assert f"cannot listen on port {port}" in service.output
    assert "Traceback" not in service.output


def test_default_logging_is_one_json_object_per_line(services: type[Service]) -> None:
    service = services(APP, env={"SERVICE": "svc", "ENVIRONMENT": "staging"})
    port = service.wait_serving()
    http_get(port, "/fail")
    service.send(signal.SIGTERM)
    assert service.wait() == 0

    records = [
        json.loads(line) for line in service.lines if not line.startswith("event: ")
    ]
    assert all(
        record["service"] == "svc" and record["environment"] == "staging"
        for record in records
    )
    failure = next(r for r in records if "handler exploded" in r.get("exception", ""))
    assert failure["level"] == "ERROR"
    access = next(r for r in records if r["logger"] == "tornado.access")
    assert '"GET /fail HTTP/1.1" 500' in access["message"]


def test_log_format_text_logs_readable_lines(services: type[Service]) -> None:
    service = services(APP, env={"DEBUG": "1", "LOG_FORMAT": "text"})
    service.wait_serving()
    service.send(signal.SIGTERM)
    assert service.wait() == 0
    assert (
        service.count(r"^\d{4}-\d\d-\d\d .* INFO .*sprockets_http.runner: serving") == 1
    )
    assert service.count(r"^\{") == 0


needs_sentry = pytest.mark.skipif(
    importlib.util.find_spec("sentry_sdk") is None,
    reason="needs the [sentry] extra installed",
)


def sentry_envelopes(
    services: type[Service], out: str, env: dict[str, str], path: str
) -> tuple[int, str]:
    """Serve with Sentry writing to ``out``, GET ``path``, stop; the status and
    what Sentry sent."""
    service = services(APP, env={"SENTRY_OUT": out, **env})
    port = service.wait_serving()
    assert http_get(port, "/sentry")[2] == b'{"active": true}'
    status = http_get(port, path)[0]
    service.send(signal.SIGTERM)
    assert service.wait() == 0
    with open(out, "rb") as stream:
        return status, stream.read().decode()


@needs_sentry
def test_sentry_receives_handler_errors_with_release_and_environment(
    services: type[Service], tmp_path: object
) -> None:
    status, envelopes = sentry_envelopes(
        services, f"{tmp_path}/sentry.out", {"ENVIRONMENT": "staging"}, "/fail"
    )
    assert status == 500
    assert "handler exploded" in envelopes
    assert '"release":"1.2.3"' in envelopes
    assert '"environment":"staging"' in envelopes


@needs_sentry
def test_sentry_reads_the_settings_the_factory_made(
    services: type[Service], tmp_path: object
) -> None:
    _, envelopes = sentry_envelopes(
        services, f"{tmp_path}/sentry.out", {"SENTRY_FROM_FACTORY": "1"}, "/log"
    )
    assert '"release":"9.9.9"' in envelopes
    assert '"environment":"from-factory"' in envelopes
    # As with sprockets.http, only CRITICAL records become events.
    logged = [
        event["logentry"]["message"]
        for event in map(json.loads, filter(None, envelopes.splitlines()))
        if "logentry" in event
    ]
    assert logged == ["a critical record"]


@needs_sentry
def test_sentry_stays_off_without_a_dsn(services: type[Service]) -> None:
    # Its per-request instrumentation would cost throughput for nothing.
    service = services(APP, env={"SENTRY_DSN": ""})
    port = service.wait_serving()
    assert http_get(port, "/sentry")[2] == b'{"active": false}'
    service.send(signal.SIGTERM)
    assert service.wait() == 0
