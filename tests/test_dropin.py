"""Services written for sprockets.http 2.5.1, run as real processes.

Every service is ``tests/apps/dropin_app.py``; the tests follow its
``event:`` lines and its log, send real signals and make real requests.
"""

from __future__ import annotations

import re
import signal

import pytest
from support import Service, free_port, http_get

APP = ["-m", "tests.apps.dropin_app"]


def events(service: Service) -> list[str]:
    return [
        re.sub(r" pid=\d+$", "", line.split("event: ", 1)[1].strip())
        for line in service.lines
        if line.startswith("event: ")
    ]


@pytest.mark.parametrize("where", ["before_run", "on_start", "task", "factory_limit"])
def test_app_stop_from_a_callback_or_task_stops_gracefully(
    services: type[Service], where: str
) -> None:
    service = services(APP, env={"STOP_IN": where})

    assert service.wait() == 0, service.output
    assert events(service).count("shutdown") == 1
    assert "the application asked to stop, stopping" in service.output
    assert "stopped (pid" in service.output
    # Stopped before serving: on_start never ran.
    assert ("on_start" in events(service)) is (where != "before_run")


def test_app_stop_from_a_handler_drains_and_exits_zero(
    services: type[Service],
) -> None:
    service = services(APP)
    port = service.wait_serving()
    status, _, body = http_get(port, "/stop")
    assert (status, body) == (200, b'{"stopping": true}')
    assert service.wait() == 0
    assert events(service).count("shutdown") == 1
    assert "draining" in service.output


def test_a_worker_that_stops_before_ready_takes_the_service_down(
    services: type[Service],
) -> None:
    service = services(APP, env={"STOP_IN": "before_run", "WORKERS": "2"})
    assert service.wait() == 0, service.output
    assert service.count(r"worker \d+ started") == 2  # none was replaced
    assert service.count("asked to stop before it was ready, stopping the service")
    assert "unexpectedly" not in service.output


def test_a_worker_that_stops_from_a_handler_stops_every_worker(
    services: type[Service],
) -> None:
    service = services(APP, env={"WORKERS": "2"})
    service.wait_for("all 2 workers ready")
    port = service.wait_serving()
    assert http_get(port, "/stop")[0] == 200
    assert service.wait() == 0, service.output
    assert events(service).count("shutdown") == 2
    assert service.count("the application asked to stop, stopping the service") == 1


@pytest.mark.parametrize("where", ["main", "factory"])
def test_logs_survive_the_users_own_dict_config(
    services: type[Service], where: str
) -> None:
    service = services(APP, env={"USER_LOGGING": where})
    port = service.wait_serving()
    assert http_get(port, "/fail")[0] == 500
    service.send(signal.SIGTERM)
    assert service.wait() == 0
    output = service.output
    assert "INFO sprockets_http.runner: serving on port" in output
    assert "ERROR FailingHandler: GET /fail failed with 500" in output
    assert "handler broke" in output  # its traceback
    assert "WARNING tornado.access: " not in output
    assert re.search(r"ERROR tornado.access: .*GET /fail", output)
    assert "INFO sprockets_http.runner: stopped" in output


def test_a_before_run_traceback_survives_a_dict_config_in_the_factory(
    services: type[Service],
) -> None:
    service = services(APP, env={"USER_LOGGING": "factory", "FAIL_BEFORE_RUN": "1"})
    assert service.wait() == 70
    assert "boom-before-run" in service.output
    assert "Traceback" in service.output


@pytest.mark.parametrize(
    ("factory", "received"),
    [
        ("bare", "[]"),
        ("explicit", "['debug', 'service']"),
        ("", "['debug', 'service']"),
    ],
)
def test_the_factory_gets_the_callers_settings_and_debug_only(
    services: type[Service], factory: str, received: str
) -> None:
    service = services(APP, env={"FACTORY": factory, "DEBUG": "0"})
    service.wait_serving()
    service.send(signal.SIGTERM)
    assert service.wait() == 0, service.output
    settings_event = f"factory settings={received}"
    if factory == "bare":
        settings_event = "factory settings=[]"
    assert settings_event in events(service)
    if factory == "explicit":
        assert "explicit debug=False" in events(service)


def test_factory_and_before_run_run_before_the_loop(services: type[Service]) -> None:
    service = services(APP)
    service.wait_serving()
    service.send(signal.SIGTERM)
    assert service.wait() == 0
    assert events(service)[:3] == [
        "factory run_sync=1",
        "factory settings=['debug', 'service']",
        "before_run run_sync=ran",
    ]


def test_on_start_callbacks_do_not_wait_on_each_other(
    services: type[Service],
) -> None:
    # The first runs for ever, the second fails, the third still runs.
    service = services(APP, env={"ON_START_CONSUMER": "1", "SHUTDOWN_LIMIT": "1"})
    service.wait_serving()
    service.wait_for("event: on_start")
    assert "event: consumer started" in service.output
    service.wait_for("LookupError: boom-on-start")
    service.send(signal.SIGTERM)
    assert service.wait() == 0
    # The consumer, still running after the shutdown callbacks, is cancelled
    # once shutdown_limit has run out, and named.
    assert re.search(
        r"cancelling 1 task\(s\) still pending .*consume_forever", (service.output)
    )


def test_pending_work_finishes_and_what_never_ends_is_cancelled(
    services: type[Service],
) -> None:
    service = services(APP, env={"PENDING": "1", "SHUTDOWN_LIMIT": "1"})
    service.wait_serving()
    service.send(signal.SIGTERM)
    assert service.wait(10) == 0
    assert events(service)[-2:] == ["shutdown", "flushed"]
    [warning] = [line for line in service.lines if "still pending" in line]
    assert "never-ends" in warning
    assert "flush" not in warning


def test_a_plain_application_with_runner_callbacks(services: type[Service]) -> None:
    service = services(APP, env={"FACTORY": "plain"})
    service.wait_serving()
    service.wait_for("event: on_start")
    service.send(signal.SIGTERM)
    assert service.wait() == 0
    assert "before_run run_sync=ran" in events(service)
    assert events(service).count("shutdown") == 1


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT])
def test_start_server_with_the_callers_own_loop(
    services: type[Service], signo: int
) -> None:
    service = services(APP, env={"START_SERVER": "1", "PORT": str(free_port())})
    port = service.wait_serving()
    assert http_get(port, "/")[0] == 200
    service.send(signo)
    assert service.wait() == 0, service.output
    assert events(service)[-2:] == ["shutdown", "loop stopped"]
    assert "drained" in service.output


def test_a_second_service_on_the_same_port_fails_unless_both_share_it(
    services: type[Service],
) -> None:
    port = free_port()
    first = services(APP, env={"PORT": str(port)})
    assert first.wait_serving() == port
    second = services(APP, env={"PORT": str(port)})
    assert second.wait() == 1
    assert f"cannot listen on port {port}" in second.output

    first.send(signal.SIGTERM)
    assert first.wait() == 0
    sharing = [services(APP, env={"PORT": str(port), "REUSE_PORT": "1"}) for _ in "ab"]
    for service in sharing:
        assert service.wait_serving() == port
    for service in sharing:
        service.send(signal.SIGTERM)
        assert service.wait() == 0
